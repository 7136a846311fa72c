//! The monitor's costs.
//!
//! - `tick/<scopes>_scopes/<threads>_threads`: one whole sampler tick ([`Sampler::sample_now`]:
//!   snapshot, jemalloc epoch and stats, RSS, cgroup, reconciliation, history, growth fits and
//!   status) while `threads` live threads have each booked to `scopes` distinct scopes. As in the
//!   snapshot bench, cases run in ascending order of scopes, then threads, and each case also
//!   reads what the cases before it registered.
//! - `read/*`: each source a tick reads, side by side: the RSS from `/proc/self/statm` (this
//!   crate's reader) and through `sysinfo` (own process only), jemalloc's stats after an epoch
//!   advance, the cgroup files.
//! - Before criterion, in a child process, `cpu share at 1 Hz`: a sampler at its default 1 s interval runs for
//!   `MEMLEDGER_CPU_SECONDS` (default 10) over 16 threads × 256 scopes with a full history
//!   window, and its thread's CPU time is divided by the wall time.

use std::hint::black_box;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use memledger_monitor::{Budget, Sampler};
use tikv_jemallocator::Jemalloc;

#[global_allocator]
static GLOBAL: memledger::Ledger<Jemalloc> = memledger::Ledger::new(Jemalloc);

const TICK_SCOPES: [usize; 3] = [16, 256, 1024];
const TICK_THREADS: [usize; 3] = [1, 16, 64];

fn sampler(interval: Duration) -> Sampler {
    Sampler::builder()
        .interval(interval)
        .budget(Budget::builder().total(1 << 40).build().unwrap())
        .start()
        .unwrap()
}

/// Runs `f` while `threads` threads, each having booked to every scope in `names`, stay alive.
fn with_threads(threads: usize, names: &[String], f: impl FnOnce()) {
    let booked = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    thread::scope(|s| {
        for _ in 0..threads {
            let (booked, done) = (&booked, &done);
            s.spawn(move || {
                let held: Vec<Box<u64>> = names
                    .iter()
                    .map(|name| memledger::in_scope(name, || Box::new(1)))
                    .collect();
                booked.wait();
                done.wait();
                drop(held);
            });
        }
        booked.wait();
        f();
        done.wait();
    });
}

fn ticks(c: &mut Criterion) {
    let names: Vec<String> = (0..*TICK_SCOPES.last().unwrap())
        .map(|i| format!("tick/{i}"))
        .collect();
    // A long interval: the background thread stays out of the way; every tick measured is a
    // `sample_now`, each adding to the history like a scheduled one.
    let sampler = sampler(Duration::from_secs(3600));
    let mut group = c.benchmark_group("tick");
    for scopes in TICK_SCOPES {
        for threads in TICK_THREADS {
            with_threads(threads, &names[..scopes], || {
                let id = BenchmarkId::new(format!("{scopes}_scopes"), format!("{threads}_threads"));
                group.bench_function(id, |b| b.iter(|| black_box(sampler.sample_now())));
            });
        }
    }
    group.finish();
    sampler.stop();
}

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group.bench_function("rss_proc_statm", |b| {
        b.iter(|| black_box(memledger_monitor::ProcessMemory::read().unwrap()))
    });
    let pid = sysinfo::Pid::from_u32(std::process::id());
    let mut system = sysinfo::System::new();
    group.bench_function("rss_sysinfo_own_process", |b| {
        b.iter(|| {
            system.refresh_processes_specifics(
                sysinfo::ProcessesToUpdate::Some(&[pid]),
                true,
                sysinfo::ProcessRefreshKind::nothing().with_memory(),
            );
            black_box(system.process(pid).unwrap().memory())
        })
    });
    group.bench_function("jemalloc_epoch_and_stats", |b| {
        b.iter(|| black_box(memledger_monitor::AllocatorStats::read().unwrap()))
    });
    group.bench_function("cgroup", |b| {
        b.iter(|| black_box(memledger_monitor::CgroupMemory::read()))
    });
    group.bench_function("snapshot", |b| b.iter(memledger::snapshot));
    group.finish();
}

fn cpu_share() {
    let seconds: u64 = std::env::var("MEMLEDGER_CPU_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let names: Vec<String> = (0..256).map(|i| format!("cpu/{i}")).collect();
    with_threads(16, &names, || {
        let sampler = sampler(Duration::from_secs(1));
        // Fill a five-minute growth window's worth of history first, so that every tick fits
        // the longest series it will ever fit.
        for _ in 0..300 {
            sampler.sample_now();
        }
        let cpu_before = sampler.stats().cpu_time;
        let began = Instant::now();
        thread::sleep(Duration::from_secs(seconds));
        let stats = sampler.stats();
        let wall = began.elapsed();
        sampler.stop();
        match (cpu_before, stats.cpu_time) {
            (Some(before), Some(after)) => println!(
                "sampler cpu share at 1 Hz over {:.1} s (16 threads x 256 scopes, {} history \
                 entries): {:.4} % of one core ({:?} of CPU; last tick {:?})",
                wall.as_secs_f64(),
                stats.history_len,
                (after - before).as_secs_f64() * 100.0 / wall.as_secs_f64(),
                after - before,
                stats.last_tick
            ),
            _ => println!("sampler cpu share: thread CPU time not available on this platform"),
        }
    });
}

/// Set in the child process that measures the CPU share.
const CPU_SHARE_CHILD: &str = "MEMLEDGER_BENCH_CPU_SHARE_CHILD";

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    // The CPU share runs in a child process of its own, so that neither its scopes and threads
    // nor the criterion cases' are read by the other.
    if std::env::var_os(CPU_SHARE_CHILD).is_some() {
        cpu_share();
        return;
    }
    if std::env::args().any(|a| a == "--bench") {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .env(CPU_SHARE_CHILD, "1")
            .status()
            .unwrap();
        assert!(status.success(), "the cpu-share child failed: {status}");
    }
    reads(&mut criterion);
    ticks(&mut criterion);
    criterion.final_summary();
}
