//! Reconciliation, the sampler, history, growth, budgets and status, over jemalloc.
//!
//! The tests take one lock each: the layer test needs no other thread to free memory between its
//! readings, and the timing of the leak test is steadier alone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use memledger_monitor::{
    Budget, BudgetBasis, BudgetError, Event, GapKind, LeakDetection, Level, Limit, ProcessMemory,
    ReadError, Reason, Reconciliation, Sampler, ScopeBudget,
};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

#[cfg(target_os = "linux")]
#[path = "common/smaps.rs"]
mod smaps;
#[cfg(target_os = "linux")]
use smaps::{within, Rollup};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn budget(total: u64) -> Budget {
    Budget::builder().total(total).build().unwrap()
}

/// Waits for the first sample that `pick` accepts.
fn wait_for<T>(
    events: &memledger_monitor::Subscription,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(event) = events.recv_timeout(Duration::from_secs(1)) {
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }
    panic!("no matching event within 30 s");
}

/// jemalloc's figures read by the test itself, apart from the reconciliation.
#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug)]
struct Direct {
    allocated: u64,
    active: u64,
    metadata: u64,
    resident: u64,
}

#[cfg(target_os = "linux")]
impl Direct {
    fn read() -> Direct {
        use tikv_jemalloc_ctl::{epoch, stats};
        epoch::advance().unwrap();
        Direct {
            allocated: stats::allocated::read().unwrap() as u64,
            active: stats::active::read().unwrap() as u64,
            metadata: stats::metadata::read().unwrap() as u64,
            resident: stats::resident::read().unwrap() as u64,
        }
    }
}

/// How far a figure may move between the test's reading of a second source and the
/// reconciliation's: the readings allocate (the reconciliation's snapshot and breakdown, the
/// test's read of smaps_rollup), threads of the tests before this one may still be finishing, and
/// the kernel's and jemalloc's figures move by whole pages. The most seen was 12,960 B (8 runs of
/// `cargo test -p memledger-monitor --all-features --test monitor`; 0 B with this test alone);
/// 256 KiB, 64 pages, leaves room for a noisy machine.
#[cfg(target_os = "linux")]
const SLACK: u64 = 256 * 1024;

/// The reconciliation's layers against second sources read by the test: the ledger against the
/// bytes the test allocated, jemalloc's layers against jemalloc read directly, the RSS and its
/// file-backed part against the kernel's page-table walk (`smaps_rollup`); the gaps are the steps
/// between the layers, and the overlap between layers (the negative remainder) is no more than
/// jemalloc's metadata and the resident bytes it counts beyond the kernel's anonymous memory.
#[test]
#[cfg(target_os = "linux")]
fn layers_match_jemalloc_and_the_kernel_read_directly() {
    let _serial = serial();
    let index: Vec<Vec<u64>> = memledger::in_scope("reconcile/index", || {
        (0..2000).map(|i| vec![i; 1 + i as usize % 300]).collect()
    });
    // The outer vector's 2000 entries and each inner vector's elements, as the test allocated
    // them.
    let index_bytes: u64 = 2000 * 24 + (0..2000u64).map(|i| 8 * (1 + i % 300)).sum::<u64>();
    // The first reading pages in the reconciliation's code and opens its files: read once before
    // comparing, so that the comparisons see only what a reading itself allocates and touches.
    let _ = (
        Rollup::read(),
        Direct::read(),
        Reconciliation::capture().unwrap(),
    );
    let mut most_moved = 0u64;
    for _ in 0..20 {
        let (kernel_before, direct_before) = (Rollup::read(), Direct::read());
        let r = Reconciliation::capture().unwrap();
        let (direct_after, kernel_after) = (Direct::read(), Rollup::read());
        let a = r.allocator.clone().expect("jemalloc serves this binary");
        for (what, mine, before, after) in [
            (
                "allocated",
                a.allocated,
                direct_before.allocated,
                direct_after.allocated,
            ),
            (
                "active",
                a.active,
                direct_before.active,
                direct_after.active,
            ),
            (
                "metadata",
                a.metadata,
                direct_before.metadata,
                direct_after.metadata,
            ),
            (
                "resident",
                a.resident,
                direct_before.resident,
                direct_after.resident,
            ),
            (
                "rss",
                r.process.rss_bytes,
                kernel_before.rss,
                kernel_after.rss,
            ),
            (
                "file-backed",
                r.process.file_backed_bytes.unwrap(),
                kernel_before.file_backed(),
                kernel_after.file_backed(),
            ),
        ] {
            assert!(
                within(mine, before, after, SLACK),
                "{what}: {mine} B in the reconciliation, {before} B and {after} B read directly"
            );
            let moved = mine.abs_diff(before).max(mine.abs_diff(after));
            most_moved = most_moved.max(moved);
        }
        // The ledger holds the test's blocks, to the byte, and they are in jemalloc's figures.
        let index_entry = r
            .breakdown
            .iter()
            .find(|e| e.label == "reconcile/index")
            .unwrap();
        assert_eq!(index_entry.bytes, index_bytes);
        assert!(r.ledger_bytes >= index_bytes);
        assert!(r.tag_bytes >= 2 * 2001, "every live block has a tag");
        assert!(r.ledger_bytes + r.tag_bytes <= a.allocated, "{r:?}");
        // jemalloc documents `allocated <= active <= resident`.
        assert!(a.allocated <= a.active && a.active <= a.resident, "{a:?}");
        let gaps = r.gaps();
        let kinds: Vec<GapKind> = gaps.iter().map(|g| g.kind).collect();
        assert_eq!(
            kinds,
            [
                GapKind::Tags,
                GapKind::CachedBlocks,
                GapKind::SizeClassRounding,
                GapKind::Fragmentation,
                GapKind::AllocatorMetadata,
                GapKind::DirtyPages,
                GapKind::FileBacked,
                GapKind::OutsideHeap
            ]
        );
        // Each named gap is the step between two layers.
        assert_eq!(r.gap(GapKind::Tags), Some(r.tag_bytes));
        let cached = r.cached_bytes + a.tcache_bytes;
        assert_eq!(r.gap(GapKind::CachedBlocks), Some(cached));
        assert_eq!(
            r.gap(GapKind::SizeClassRounding),
            Some(
                a.allocated
                    .saturating_sub(r.ledger_bytes + r.tag_bytes + cached)
            )
        );
        assert_eq!(r.gap(GapKind::Fragmentation), Some(a.active - a.allocated));
        assert_eq!(r.gap(GapKind::AllocatorMetadata), Some(a.metadata));
        assert_eq!(
            r.gap(GapKind::DirtyPages),
            Some(a.resident.saturating_sub(a.active + a.metadata))
        );
        // The memory outside the heap is the kernel's anonymous memory beyond jemalloc's.
        let anonymous = kernel_before.anonymous.max(kernel_after.anonymous);
        let outside = r.gap(GapKind::OutsideHeap).unwrap();
        assert!(
            within(
                outside,
                kernel_before.anonymous.saturating_sub(a.resident),
                kernel_after.anonymous.saturating_sub(a.resident),
                SLACK
            ),
            "outside the heap: {outside} B, the kernel's anonymous memory beyond jemalloc's \
             resident: {} B",
            anonymous.saturating_sub(a.resident)
        );
        // The overlap between layers: jemalloc's metadata that is not resident, and the pages
        // jemalloc counts resident that the kernel does not hold (untouched or purged ones), which
        // show as jemalloc's resident beyond all of the kernel's anonymous memory.
        let overlap = r.remainder();
        let claimed = a
            .resident
            .saturating_sub(kernel_before.anonymous.min(kernel_after.anonymous));
        println!(
            "remainder {overlap} B: metadata {} B, resident beyond the kernel's anonymous {claimed} B",
            a.metadata
        );
        assert!(
            overlap <= 0,
            "the RSS is the last layer: nothing is left above it"
        );
        assert!(
            overlap.unsigned_abs() <= a.metadata + claimed + SLACK,
            "an overlap of {overlap} B, more than jemalloc's metadata {} B and its resident \
             beyond the kernel's anonymous memory {claimed} B",
            a.metadata
        );
        // The breakdown: every scope's bytes, the test's to the byte, and the rest of the RSS,
        // which holds at least the file-backed pages.
        let scopes: u64 = r
            .breakdown
            .iter()
            .filter(|e| e.kind != memledger_monitor::BreakdownKind::Other)
            .map(|e| e.bytes)
            .sum();
        assert_eq!(scopes, r.ledger_bytes);
        let other = r
            .breakdown
            .iter()
            .find(|e| e.kind == memledger_monitor::BreakdownKind::Other)
            .unwrap();
        let file_backed = kernel_before.file_backed().min(kernel_after.file_backed());
        assert!(
            other.bytes + SLACK >= file_backed,
            "<other> {} B, below the file-backed {file_backed} B",
            other.bytes
        );
        let percent = index_bytes as f64 * 100.0 / r.process.rss_bytes as f64;
        assert!((index_entry.percent_of_rss - percent).abs() < 1e-9);
        assert!(r.to_string().contains("unexplained: stacks"));
    }
    println!("most moved between the readings: {most_moved} B");
    drop(index);
}

#[test]
fn budgets_reject_what_clashes() {
    let clash = Budget::builder()
        .total(1000)
        .soft(Limit::Bytes(900))
        .prompt(Limit::Bytes(800))
        .build()
        .unwrap_err();
    assert_eq!(
        clash,
        BudgetError::Misordered {
            lower: "soft",
            lower_bytes: 900,
            upper: "prompt",
            upper_bytes: 800
        }
    );
    let over_total = Budget::builder()
        .total(1000)
        .hard(Limit::Bytes(1001))
        .build()
        .unwrap_err();
    assert!(over_total
        .to_string()
        .contains("hard limit (1001 bytes) is above the total"));
    for bad in [1.5, -0.1, f64::NAN] {
        let err = Budget::builder()
            .total(1000)
            .prompt(Limit::Fraction(bad))
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                BudgetError::BadFraction {
                    which: "prompt",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(
        Budget::builder().total(0).build().unwrap_err(),
        BudgetError::ZeroTotal
    );
    assert!(ScopeBudget::new(10, 9).is_err());
    assert!(ScopeBudget::new(0, 0).is_err());
    // The default total is the cgroup limit or the machine.
    let default = Budget::builder().build().unwrap();
    assert_eq!(default.total, Budget::default_total().unwrap());
    assert_eq!(default.soft, (default.total as f64 * 0.7) as u64);
    // Bad sampler settings are errors too.
    for builder in [
        Sampler::builder().interval(Duration::ZERO),
        Sampler::builder()
            .interval(Duration::from_secs(2))
            .retention(Duration::from_secs(1)),
        Sampler::builder().queue(0),
    ] {
        let err = builder.budget(budget(1 << 30)).start().unwrap_err();
        assert!(
            matches!(err, memledger_monitor::Error::InvalidSetting { .. }),
            "{err}"
        );
    }
}

/// A memory source whose RSS the test sets.
fn fake_rss(value: Arc<AtomicU64>) -> impl FnMut() -> Result<ProcessMemory, ReadError> + Send {
    move || {
        Ok(ProcessMemory {
            rss_bytes: value.load(Ordering::SeqCst),
            file_backed_bytes: Some(0),
            virtual_bytes: 0,
        })
    }
}

#[test]
fn levels_change_exactly_at_each_limit() {
    let _serial = serial();
    let rss = Arc::new(AtomicU64::new(100));
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(2))
        .budget(
            Budget::builder()
                .total(1000)
                .soft(Limit::Bytes(700))
                .prompt(Limit::Bytes(850))
                .hard(Limit::Bytes(950))
                .build()
                .unwrap(),
        )
        .memory_source(fake_rss(rss.clone()))
        .start()
        .unwrap();
    let events = sampler.subscribe();
    let cases = [
        (699, Level::Healthy),
        (700, Level::Caution),
        (701, Level::Caution),
        (849, Level::Caution),
        (850, Level::Warning),
        (851, Level::Warning),
        (949, Level::Warning),
        (950, Level::Critical),
        (951, Level::Critical),
        (1000, Level::Critical),
        (10, Level::Healthy),
    ];
    let mut previous = Level::Healthy;
    for (bytes, level) in cases {
        rss.store(bytes, Ordering::SeqCst);
        let (status, changes) = {
            let mut changes = Vec::new();
            let status = wait_for(&events, |e| match e {
                Event::LevelChanged { from, to, .. } => {
                    changes.push((*from, *to));
                    None
                }
                Event::Sample(s) if s.status.current_bytes == bytes => Some(s.status.clone()),
                _ => None,
            });
            // A level change is sent right after the sample that shows it.
            if let Some(Event::LevelChanged { from, to, .. }) =
                events.recv_timeout(Duration::from_millis(500))
            {
                changes.push((from, to));
            }
            (status, changes)
        };
        assert_eq!(status.level, level, "{bytes} bytes");
        assert_eq!(status.measure, BudgetBasis::Rss);
        assert_eq!(status.is_healthy(), level == Level::Healthy);
        assert_eq!(status.is_caution(), level == Level::Caution);
        assert_eq!(status.is_warning(), level == Level::Warning);
        assert_eq!(status.is_critical(), level == Level::Critical);
        assert_eq!(status.exceeds_soft(), bytes >= 700);
        assert_eq!(status.exceeds_prompt(), bytes >= 850);
        assert_eq!(status.exceeds_hard(), bytes >= 950);
        assert_eq!(status.available_bytes, 1000u64.saturating_sub(bytes));
        assert!((status.percent_of_total - bytes as f64 / 10.0).abs() < 1e-9);
        assert!(
            status.summary.starts_with(&level.to_string()),
            "{}",
            status.summary
        );
        if level != previous {
            assert!(changes.contains(&(previous, level)), "{bytes}: {changes:?}");
        }
        previous = level;
    }
    sampler.stop();
}

#[test]
fn failed_readings_are_recorded_and_the_sampler_goes_on() {
    let _serial = serial();
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(2))
        .budget(budget(1 << 40))
        .memory_source(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            match n % 4 {
                3 => panic!("a memory source that panics"),
                0 => Err(ReadError::PermissionDenied {
                    source: "/proc/self/statm".to_string(),
                }),
                // Nonsense: a process with nothing resident.
                1 => Ok(ProcessMemory {
                    rss_bytes: 0,
                    file_backed_bytes: None,
                    virtual_bytes: 0,
                }),
                _ => ProcessMemory::read(),
            }
        })
        .start()
        .unwrap();
    let events = sampler.subscribe();
    let mut failures = Vec::new();
    let mut good = 0;
    while failures.len() < 6 || good < 3 {
        match wait_for(&events, |e| Some(e.clone())) {
            Event::ReadFailed { error, .. } => failures.push(error),
            Event::Sample(s) => {
                if let Ok(r) = &s.reconciliation {
                    assert!(r.process.rss_bytes > 0);
                    assert_eq!(s.status.measure, BudgetBasis::Rss);
                    good += 1;
                } else {
                    // The tick fell back to the ledger and says so.
                    assert_eq!(s.status.measure, BudgetBasis::Ledger);
                    assert!(s
                        .status
                        .note
                        .as_deref()
                        .unwrap()
                        .contains("RSS unavailable"));
                    assert_eq!(s.status.current_bytes, s.snapshot.total_live_bytes());
                }
            }
            _ => {}
        }
    }
    assert!(failures
        .iter()
        .any(|e| matches!(e, ReadError::PermissionDenied { .. })));
    assert!(failures
        .iter()
        .any(|e| matches!(e, ReadError::Invalid { .. })));
    let stats = sampler.stats();
    assert!(stats.read_failures >= 6);
    // The gaps are in the history, with their reasons.
    let history = sampler.history_last(usize::MAX);
    assert!(history
        .iter()
        .any(|e| e.rss_bytes.is_none() && e.read_error.is_some()));
    assert!(history.iter().any(|e| e.rss_bytes.is_some()));
    sampler.stop();
}

#[test]
fn stopping_is_prompt_with_a_long_interval() {
    let _serial = serial();
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(30))
        .budget(budget(1 << 40))
        .start()
        .unwrap();
    let events = sampler.subscribe();
    while sampler.stats().ticks == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let began = Instant::now();
    sampler.stop();
    let took = began.elapsed();
    // A functional bound, not a speed figure: the sampler must not sleep out its 30 s interval.
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    // The subscription ends once the sampler is gone.
    while events.recv().is_some() {}
}

#[test]
fn a_reader_that_never_reads_costs_nothing_and_gets_the_newest() {
    let _serial = serial();
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(1))
        .queue(4)
        .budget(budget(1 << 40))
        .start()
        .unwrap();
    let idle = sampler.subscribe();
    let own_before = memledger::snapshot().own().live_bytes;
    while sampler.stats().ticks < 200 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = sampler.stats();
    assert!(stats.dropped_events >= 190, "{stats:?}");
    assert!(idle.dropped() >= 190);
    // Only the newest four events wait.
    let own_after = memledger::snapshot().own().live_bytes;
    sampler.stop();
    let queued: Vec<u64> = std::iter::from_fn(|| idle.try_recv())
        .filter_map(|e| match e {
            Event::Sample(s) => Some(s.sequence),
            _ => None,
        })
        .collect();
    assert!(queued.len() <= 4 && !queued.is_empty());
    assert!(
        queued[0] >= stats.ticks - 4,
        "{queued:?} of {}",
        stats.ticks
    );
    // The crate's own memory did not grow with the ticks beyond the history ring.
    assert!(
        own_after < own_before + (4 << 20),
        "{own_before} -> {own_after}"
    );
}

#[test]
fn history_is_trimmed_to_its_retention_and_answers_queries() {
    let _serial = serial();
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(2))
        .retention(Duration::from_millis(40))
        .budget(budget(1 << 40))
        .start()
        .unwrap();
    while sampler.stats().ticks < 100 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let history = sampler.history_last(usize::MAX);
    assert!(history.len() <= 21, "{}", history.len());
    let span = history.last().unwrap().uptime - history[0].uptime;
    assert!(span <= Duration::from_millis(40), "{span:?}");
    assert_eq!(sampler.history_last(3).len(), 3);
    assert_eq!(sampler.history_last(3)[2], *history.last().unwrap());
    let (from, to) = (history[2].at, history[5].at);
    let range = sampler.history_range(from, to);
    assert!(range.len() >= 4 && range.iter().all(|e| e.at >= from && e.at <= to));
    assert!(sampler
        .history_range(SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH)
        .is_empty());
    sampler.stop();

    let capped = Sampler::builder()
        .interval(Duration::from_millis(1))
        .max_history(3)
        .budget(budget(1 << 40))
        .start()
        .unwrap();
    while capped.stats().ticks < 10 {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(capped.stats().history_len, 3);
}

#[test]
fn baseline_and_diff_show_what_grew() {
    let _serial = serial();
    let sampler = Sampler::builder()
        .interval(Duration::from_secs(1))
        .budget(budget(1 << 40))
        .start()
        .unwrap();
    assert!(sampler.diff().is_none());
    let kept = memledger::in_scope("diff/kept", || vec![1u8; 4096]);
    sampler.mark_baseline();
    let grown = memledger::in_scope("diff/grown", || vec![2u8; 100_000]);
    drop(kept);
    let diff = sampler.diff().unwrap();
    let g = diff.scope("diff/grown").unwrap();
    assert_eq!(
        (g.live_before, g.live_after, g.live_delta()),
        (0, 100_000, 100_000)
    );
    assert_eq!((g.allocations, g.deallocations), (1, 0));
    let k = diff.scope("diff/kept").unwrap();
    assert_eq!((k.live_delta(), k.deallocations), (-4096, 1));
    assert_eq!(diff.scopes[0].path, "diff/grown", "largest change first");
    assert!(diff.to_string().contains("+97.7 KiB"), "{diff}");
    drop(grown);
}

/// Leaks `rate` bytes per second in `path` (pacing by the clock, so the rate holds however the
/// thread is scheduled) until `stop`.
fn leak(path: &'static str, rate: f64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let _g = memledger::enter(path);
        let began = Instant::now();
        let mut leaked = 0.0;
        while !stop.load(Ordering::Relaxed) {
            let due = rate * began.elapsed().as_secs_f64();
            while leaked + 4096.0 <= due {
                std::mem::forget(vec![0u8; 4096]);
                leaked += 4096.0;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

#[test]
fn a_steady_leak_is_flagged_at_its_rate_and_noise_is_not() {
    let _serial = serial();
    let stop = Arc::new(AtomicBool::new(false));
    let rate = 2_000_000.0;
    let leaker = leak("leaks/leaky", rate, stop.clone());
    // A scope that holds about 8 MB and churns ±4 MB at random.
    let noisy = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _g = memledger::enter("leaks/noisy");
            let mut blocks: Vec<Vec<u8>> = Vec::new();
            let mut x: u64 = 88172645463325252;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let target = 1000 + (x % 1000) as usize; // blocks of 4 KiB: 4 to 8 MB
                blocks.resize_with(target, || vec![0u8; 4096]);
                blocks.truncate(target);
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(20))
        .budget(budget(1 << 40))
        .leak_detection(LeakDetection {
            window: Duration::from_millis(1500),
            min_rate: 100_000.0,
            min_fit: 0.9,
            min_samples: 20,
        })
        .start()
        .unwrap();
    let events = sampler.subscribe();
    let flagged = wait_for(&events, |e| match e {
        Event::LeakSuspected(leak) => Some(leak.clone()),
        _ => None,
    });
    assert_eq!(flagged.path, "leaks/leaky");
    let measured = flagged.rate.window;
    assert!(
        (measured - rate).abs() <= rate * 0.10,
        "flagged at {measured:.0} B/s, leaking {rate:.0} B/s"
    );
    // Over a full window, the leak stays flagged and the noisy scope never is.
    let mut seen = 0;
    while seen < 100 {
        if let Some(Event::Sample(s)) = events.recv_timeout(Duration::from_secs(5)) {
            seen += 1;
            assert!(
                s.leaks.iter().all(|l| l.path != "leaks/noisy"),
                "{:?}",
                s.leaks
            );
            if seen == 100 {
                let leaky = s.leaks.iter().find(|l| l.path == "leaks/leaky").unwrap();
                assert!((leaky.rate.window - rate).abs() <= rate * 0.10);
                let recommended = s
                    .status
                    .recommendations
                    .iter()
                    .find(|r| r.path == "leaks/leaky")
                    .unwrap();
                assert_eq!(recommended.reason, Reason::SuspectedLeak);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    leaker.join().unwrap();
    noisy.join().unwrap();
    sampler.stop();
}

#[test]
fn scope_budgets_have_their_own_status_and_events() {
    let _serial = serial();
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(2))
        .budget(budget(1 << 40))
        .scope_budget("budgeted", ScopeBudget::new(100_000, 200_000).unwrap())
        .start()
        .unwrap();
    let events = sampler.subscribe();
    let held = memledger::in_scope("budgeted", || vec![0u8; 150_000]);
    let (from, to) = wait_for(&events, |e| match e {
        Event::ScopeLevelChanged { path, from, to, .. } if path == "budgeted" => Some((*from, *to)),
        _ => None,
    });
    assert_eq!((from, to), (Level::Healthy, Level::Caution));
    let status = sampler.status().unwrap();
    let scope = &status.scopes[0];
    assert_eq!((scope.live_bytes, scope.level), (150_000, Level::Caution));
    assert!((scope.percent_of_hard - 75.0).abs() < 1e-9);
    assert!(status
        .recommendations
        .iter()
        .any(|r| r.path == "budgeted" && r.reason == Reason::OverScopeBudget));
    drop(held);
    sampler.stop();
}

#[test]
fn the_process_wide_monitor_starts_once() {
    let _serial = serial();
    let settings = || {
        Sampler::builder()
            .interval(Duration::from_millis(5))
            .budget(budget(1 << 40))
    };
    memledger_monitor::monitor::start(settings()).unwrap();
    assert!(matches!(
        memledger_monitor::monitor::start(settings()),
        Err(memledger_monitor::Error::MonitorRunning)
    ));
    let events = memledger_monitor::monitor::subscribe().unwrap();
    wait_for(&events, |e| matches!(e, Event::Sample(_)).then_some(()));
    assert!(memledger_monitor::monitor::status().is_some());
    assert!(memledger_monitor::monitor::stop());
    assert!(!memledger_monitor::monitor::stop());
    assert!(memledger_monitor::monitor::status().is_none());
}

#[test]
fn each_measure_checks_its_own_figure() {
    let _serial = serial();
    let start = |measure| {
        Sampler::builder()
            .interval(Duration::from_secs(3600))
            .budget(budget(1 << 40))
            .measure(measure)
            .start()
            .unwrap()
    };
    let ledger = start(BudgetBasis::Ledger);
    let sample = ledger.sample_now();
    assert_eq!(sample.status.measure, BudgetBasis::Ledger);
    assert_eq!(
        sample.status.current_bytes,
        sample.snapshot.total_live_bytes()
    );
    assert_eq!(sample.status.note, None);
    ledger.stop();

    let cgroup = start(BudgetBasis::Cgroup);
    let sample = cgroup.sample_now();
    let reconciliation = sample.reconciliation.as_ref().unwrap();
    match reconciliation.cgroup {
        Some(c) => {
            assert_eq!(sample.status.measure, BudgetBasis::Cgroup);
            assert_eq!(sample.status.current_bytes, c.usage_bytes);
        }
        None => {
            // No cgroup here: the status says it checked the ledger instead.
            assert_eq!(sample.status.measure, BudgetBasis::Ledger);
            assert!(sample
                .status
                .note
                .as_deref()
                .unwrap()
                .contains("cgroup usage unavailable"));
        }
    }
    cgroup.stop();

    let rss = start(BudgetBasis::Rss);
    let sample = rss.sample_now();
    assert_eq!(
        sample.status.current_bytes,
        sample.reconciliation.as_ref().unwrap().process.rss_bytes
    );
    // The reconciliation and the diff are the crate's own memory, wherever they are taken.
    let own_before = memledger::snapshot().own().allocations;
    let r = memledger::in_scope("measures/user", Reconciliation::capture).unwrap();
    assert!(memledger::snapshot().own().allocations > own_before);
    assert_eq!(
        memledger::snapshot()
            .scope("measures/user")
            .map_or(0, |s| s.live_bytes),
        0
    );
    drop(r);
    rss.stop();
}
