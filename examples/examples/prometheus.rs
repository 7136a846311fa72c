//! The books served to Prometheus: a sampler ticks every second, a publisher records each tick
//! through the `metrics` facade, and `metrics-exporter-prometheus` serves them over HTTP on
//! 127.0.0.1 while a small workload grows and shrinks two scopes, `global_index` and
//! `project_indexes`.
//!
//! ```text
//! cargo run --example prometheus [-- PORT] [--seconds N]
//! curl http://127.0.0.1:9898/metrics
//! ```
//!
//! The port defaults to 9898, the run to 20 seconds.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use memledger_examples::Rng;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

/// Projects kept indexed at once; the oldest is evicted when a new one comes.
const KEPT_PROJECTS: usize = 6;

struct Options {
    port: u16,
    seconds: u64,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        port: 9898,
        seconds: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--seconds" {
            let value = args.next().ok_or("--seconds needs a number")?;
            options.seconds = value
                .parse()
                .map_err(|_| format!("--seconds needs a number, not {value:?}"))?;
        } else {
            options.port = arg
                .parse()
                .map_err(|_| format!("expected a port number or --seconds N, not {arg:?}"))?;
        }
    }
    Ok(options)
}

/// A project's index: symbol → the files that use it.
fn build_project_index(rng: &mut Rng, files: u32) -> HashMap<String, Vec<u32>> {
    let _g = memledger::scope!("project_indexes");
    let mut index: HashMap<String, Vec<u32>> = HashMap::new();
    for file in 0..files {
        for _ in 0..50 {
            let symbol = format!("symbol_{}", rng.next() % 20_000);
            index.entry(symbol).or_default().push(file);
        }
    }
    index
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options()?;

    // No tokio runtime is current here, so the exporter serves on a thread of its own. It binds
    // the loopback address only.
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(([127, 0, 0, 1], options.port))
        .install()?;
    let sampler = memledger_monitor::Sampler::builder()
        .interval(Duration::from_secs(1))
        .scope_budget(
            "project_indexes",
            memledger_monitor::ScopeBudget::new(8 << 20, 32 << 20)?,
        )
        .start()?;
    let publisher = memledger_metrics::Publisher::start(&sampler)?;
    println!(
        "serving for {} s; scrape with: curl http://127.0.0.1:{}/metrics",
        options.seconds, options.port
    );

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The global index: symbol → how many projects have used it.
    let mut global: HashMap<String, u32> = HashMap::new();
    let mut projects: VecDeque<HashMap<String, Vec<u32>>> = VecDeque::new();
    let started = Instant::now();
    let mut step = 0u64;
    while started.elapsed() < Duration::from_secs(options.seconds) {
        let files = 500 + (rng.next() % 1500) as u32;
        let project = build_project_index(&mut rng, files);
        memledger::in_scope("global_index", || {
            for symbol in project.keys() {
                *global.entry(symbol.clone()).or_default() += 1;
            }
        });
        projects.push_back(project);
        if projects.len() > KEPT_PROJECTS {
            projects.pop_front();
        }
        step += 1;
        if step % 4 == 0 {
            let snapshot = memledger::snapshot();
            let live = |path: &str| snapshot.scope(path).map_or(0, |s| s.live_bytes);
            println!(
                "{:>3} s: project_indexes {:>6.1} MiB, global_index {:>5.1} MiB, {} samples published",
                started.elapsed().as_secs(),
                live("project_indexes") as f64 / (1 << 20) as f64,
                live("global_index") as f64 / (1 << 20) as f64,
                publisher.published()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }

    publisher.stop();
    sampler.stop();
    Ok(())
}
