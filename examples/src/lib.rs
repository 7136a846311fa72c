//! Runnable examples of memledger and the crates beside it, in `examples/`:
//!
//! - `demo`: a small code-indexing service, watched live, recorded and reported;
//! - `async_tasks`: futures that keep their scope across a multi-thread runtime;
//! - `measure`: two ways of building a word index, measured;
//! - `prometheus`: the books served to Prometheus;
//! - `record`: a run recorded to JSON Lines and turned into a page;
//! - `tracing_spans`: spans that book to scopes;
//! - `end_to_end` (with `end_to_end_bare` and `end_to_end_trailer`): serde_json, rayon and flate2
//!   over the default ledger, against bare jemalloc and the ledger with a trailer on every block;
//! - `server_load` (with `server_load_bare` and `server_load_trailer`): an axum server on tokio's
//!   multi-thread runtime under the load of client threads, compared the same way.
//!
//! Run one from the workspace root with `cargo run --release --example <name>`.

/// A seeded xorshift generator, so that every run of an example builds the same data.
pub struct Rng(pub u64);

impl Rng {
    /// The next value. The seed must not be zero.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The `main` of a workload example over the default ledger: with `--compare [runs]` (5 by
/// default) it compares the builds ([`compare_builds`]); otherwise it runs `workload` and prints
/// each scope of `scopes` as the books have it.
pub fn run_or_compare(name: &str, workload: fn(), scopes: &[&str], same: &[&str]) {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--compare") {
        let runs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
        compare_builds(name, runs, same);
        return;
    }
    workload();
    let snap = memledger::snapshot();
    for &scope in scopes {
        let s = snap.scope(scope).expect("the workload's scopes");
        println!(
            "{scope:<9} allocations {:>9}  peak {:>10}  live {:>10}",
            s.allocations, s.peak_bytes, s.live_bytes
        );
    }
}

/// Runs the example binary `exe` and returns the `key=value` figures it printed.
fn figures(exe: &std::path::Path) -> Vec<(String, u64)> {
    let output = std::process::Command::new(exe)
        .output()
        .expect("the example runs");
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

/// Compares this example's build (the default ledger) with `<name>_bare` (bare jemalloc) and, if
/// it was built, `<name>_trailer` (a trailer on every block): `runs` alternating runs of each,
/// then the median of `wall_ms`, `peak_rss_kib`, `rss_kib`, `rss_mean_kib` and `rss_max_kib` per
/// build and their ratios to bare jemalloc's. The figures named in `same` must agree between the builds (the same work done).
pub fn compare_builds(name: &str, runs: usize, same: &[&str]) {
    let me = std::env::current_exe().expect("this binary");
    let build = |variant: &str| {
        me.with_file_name(format!("{name}_{variant}{}", std::env::consts::EXE_SUFFIX))
    };
    let bare = build("bare");
    assert!(
        bare.exists(),
        "build it first: cargo build --release --example {name}_bare"
    );
    let trailer = Some(build("trailer")).filter(|t| t.exists());
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
    for key in same {
        assert_eq!(
            pick(&ledger_runs, key),
            pick(&bare_runs, key),
            "both builds must do the same work ({key})"
        );
    }
    println!("median of {runs} alternating runs each");
    for key in [
        "wall_ms",
        "peak_rss_kib",
        "rss_kib",
        "rss_mean_kib",
        "rss_max_kib",
    ] {
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

/// The process's peak and current resident set, in KiB (`VmHWM` and `VmRSS` of
/// `/proc/self/status`; 0 where they cannot be read).
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// The RSS read every 100 ms on a thread of its own while a workload runs: its mean and maximum
/// over the run, in KiB (`VmRSS`, as [`rss_kib`] reads it).
pub struct RssOverRun {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(u64, u64)>,
}

impl RssOverRun {
    /// Starts the readings.
    pub fn start() -> RssOverRun {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut sum, mut count, mut max) = (0u64, 0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let rss = rss_kib().1;
                    sum += rss;
                    count += 1;
                    max = max.max(rss);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                (sum / count.max(1), max)
            })
        };
        RssOverRun { stop, thread }
    }

    /// Stops the readings; returns their mean and maximum, in KiB.
    pub fn stop(self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the RSS readings finished")
    }
}

/// The workspace README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
