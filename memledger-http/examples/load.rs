//! A bounded load test of the standalone server over loopback, and what each endpoint costs the
//! program: the figures of `BENCHMARKS.md`, "HTTP endpoints".
//!
//! `cargo run --release -p memledger-http --example load [-- --secs 3 --clients 16]`
//!
//! 1. Each endpoint's cost in the program: `Endpoints::handle` called in a loop on one thread
//!    (no network), the median and the 99th percentile per call with the shared profile and
//!    page, and the median uncached (a profile resolved and a page drawn on every request); a
//!    profile's resolution, first (which reads the binary's debug information) and again.
//! 2. The idle server: CPU time its threads used over the phase (from `/proc/self/task`).
//! 3. The load: `--clients` clients (16 by default, at most 64) on 127.0.0.1 only, each
//!    connecting, sending one `GET` and reading the answer in a loop, for `--secs` seconds per
//!    endpoint (3 by default, at most 30) and at most 1,000,000 requests in all: requests per
//!    second, p50 and p99 latency.
//! 4. Meanwhile a thread of the program allocates and frees (64 B to 4 KiB blocks in a scope):
//!    its allocation throughput alone, beside the idle server, and under each load.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

const MAX_REQUESTS: u64 = 1_000_000;

/// The endpoints measured, with the path each is asked on.
const ENDPOINTS: [&str; 7] = [
    "/metrics",
    "/debug/memledger/snapshot",
    "/debug/memledger/status",
    "/debug/memledger/reconciliation",
    "/debug/memledger/history?limit=60",
    "/debug/pprof/heap",
    "/debug/memledger/",
];

fn arg(name: &str, default: u64, max: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs = arg("--secs", 3, 30);
    let clients = arg("--clients", 16, 64) as usize;
    let phase = Duration::from_secs(secs);

    // A program with some scopes, sites and a history.
    memledger::sampling::set_rate(64 * 1024)?;
    let kept: Vec<Vec<Vec<u8>>> = (0..16)
        .map(|i| memledger::in_scope(&format!("component_{i}"), || build(256 + i * 64)))
        .collect();
    let sampler = Arc::new(
        memledger_monitor::Sampler::builder()
            .interval(Duration::from_secs(1))
            .start()?,
    );
    sampler.sample_now();

    println!("## Each endpoint's cost in the program (Endpoints::handle, no network)\n");
    let endpoints = memledger_http::Endpoints::new(Arc::clone(&sampler));
    let started = Instant::now();
    let _ = memledger_monitor::profile();
    let first_profile = started.elapsed();
    let started = Instant::now();
    let _ = memledger_monitor::profile();
    let again = started.elapsed();
    println!("profile resolved: first {first_profile:.2?}, again {again:.2?}\n");
    println!("| endpoint | median | p99 | uncached: median | bytes |");
    println!("|---|---|---|---|---|");
    for path in ENDPOINTS {
        let request = http::Request::get(path).body(())?;
        // Uncached: endpoints of their own, a profile resolved on every request and a new tick
        // before each (so a page is drawn anew).
        let uncached = memledger_http::Endpoints::builder(Arc::clone(&sampler))
            .profile_interval(Duration::ZERO)
            .build();
        let mut cold = Vec::new();
        for _ in 0..20 {
            sampler.sample_now();
            let started = Instant::now();
            let response = uncached.handle(&request);
            cold.push(started.elapsed());
            assert_eq!(response.status(), 200, "{path}");
        }
        cold.sort();
        let mut times = Vec::new();
        let mut bytes = 0;
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until || times.len() < 5 {
            let started = Instant::now();
            let response = endpoints.handle(&request);
            times.push(started.elapsed());
            bytes = response.body().len();
            assert_eq!(response.status(), 200, "{path}");
        }
        times.sort();
        println!(
            "| `{path}` | {:.1?} | {:.1?} | {:.1?} | {bytes} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            percentile(&cold, 0.5)
        );
    }

    println!("\n## Allocation throughput and the server\n");
    let alone = churn_for(phase);
    let server = memledger_http::serve(Arc::clone(&sampler), "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr();
    let cpu_before = server_cpu();
    let idle = churn_for(phase);
    let cpu_idle = server_cpu().saturating_sub(cpu_before);
    println!(
        "idle server: its threads used {cpu_idle:?} of CPU over {secs} s; the program's \
         allocation throughput {:.1} M ops/s alone, {:.1} M ops/s beside the idle server\n",
        alone / 1e6,
        idle / 1e6
    );
    println!(
        "| endpoint ({clients} clients, {secs} s) | requests/s | p50 | p99 | refused | \
         allocation throughput |"
    );
    println!("|---|---|---|---|---|---|");
    let total = Arc::new(AtomicU64::new(0));
    for path in ENDPOINTS {
        let refused_before = server.stats().refused;
        let stop = Arc::new(AtomicBool::new(false));
        let load: Vec<_> = (0..clients)
            .map(|_| {
                let stop = Arc::clone(&stop);
                let total = Arc::clone(&total);
                std::thread::spawn(move || client(addr, path, &stop, &total))
            })
            .collect();
        let started = Instant::now();
        let throughput = churn_for(phase);
        stop.store(true, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let mut latencies: Vec<Duration> = Vec::new();
        let mut errors = 0;
        for t in load {
            let (l, e) = t.join().expect("a client");
            latencies.extend(l);
            errors += e;
        }
        latencies.sort();
        println!(
            "| `{path}` | {:.0} | {:.2?} | {:.2?} | {} | {:.1} M ops/s ({:.0} %) |",
            latencies.len() as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            server.stats().refused - refused_before + errors,
            throughput / 1e6,
            100.0 * throughput / alone
        );
    }
    server.stop();
    drop(kept);
    Ok(())
}

#[inline(never)]
fn build(blocks: usize) -> Vec<Vec<u8>> {
    (0..blocks)
        .map(|i| vec![i as u8; 1024 + i % 4096])
        .collect()
}

/// The program's own work: allocation and free pairs of 64 B to 4 KiB in a scope, on a thread
/// of its own, for `phase`; pairs per second.
fn churn_for(phase: Duration) -> f64 {
    std::thread::spawn(move || {
        let _g = memledger::enter("churn");
        let started = Instant::now();
        let mut ops = 0u64;
        let mut size = 64usize;
        while started.elapsed() < phase {
            for _ in 0..1000 {
                drop(black_box(Vec::<u8>::with_capacity(size)));
                size = if size >= 4096 { 64 } else { size * 2 };
            }
            ops += 1000;
        }
        ops as f64 / started.elapsed().as_secs_f64()
    })
    .join()
    .expect("the churn")
}

/// One client: `GET path` in a loop until `stop`; its latencies and its failed requests.
fn client(
    addr: SocketAddr,
    path: &str,
    stop: &AtomicBool,
    total: &AtomicU64,
) -> (Vec<Duration>, u64) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut body = Vec::with_capacity(64 * 1024);
    while !stop.load(Ordering::Relaxed) && total.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS {
        let started = Instant::now();
        let ok = TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(request.as_bytes())?;
            body.clear();
            s.read_to_end(&mut body)?;
            Ok(body.starts_with(b"HTTP/1.1 200"))
        });
        match ok {
            Ok(true) => latencies.push(started.elapsed()),
            _ => errors += 1,
        }
    }
    (latencies, errors)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// CPU time used so far by the server's threads (`memledger-http*`), from `/proc/self/task`.
fn server_cpu() -> Duration {
    let ticks_per_sec = 100; // USER_HZ on Linux
    let mut ticks = 0u64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("memledger-http") {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the command's closing parenthesis: utime and stime are the 12th and
        // 13th of them.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            for i in [11, 12] {
                ticks += fields.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    Duration::from_millis(ticks * 1000 / ticks_per_sec)
}
