//! The reconciliation and the sampler over the system allocator.

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

#[cfg(target_os = "linux")]
#[path = "common/smaps.rs"]
mod smaps;

/// The tests take one lock each: the reconciliation test needs no other thread to allocate or
/// free between its readings.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// With the system allocator inside, the jemalloc layers are absent and the report says why. The
/// ledger holds the test's block to the byte; on Linux the RSS and its file-backed part match the
/// kernel's page-table walk (`smaps_rollup`), the allocator's gap is the kernel's anonymous memory
/// beyond the ledger, and nothing overlaps (the ledger's written blocks are resident); with glibc,
/// the ledger and its tags fit in glibc's bytes in use (`mallinfo2`).
#[test]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation hides")]
fn reconciliation_without_jemalloc() {
    let _serial = serial();
    let held = memledger::in_scope("system_reconcile", || vec![5u8; 1 << 20]);
    // The first reading pages in the reconciliation's code and opens its files.
    let _ = memledger_monitor::Reconciliation::capture().unwrap();
    #[cfg(target_os = "linux")]
    let kernel_before = smaps::Rollup::read();
    let r = memledger_monitor::Reconciliation::capture().unwrap();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY:
    // - `mallinfo2` has no preconditions.
    let glibc = unsafe { libc::mallinfo2() };
    #[cfg(target_os = "linux")]
    let kernel_after = smaps::Rollup::read();
    let why = r.allocator.clone().unwrap_err();
    if cfg!(feature = "jemalloc") {
        assert_eq!(
            why,
            memledger_monitor::AllocatorStatsUnavailable::NotTheGlobalAllocator
        );
    } else {
        assert_eq!(why, memledger_monitor::AllocatorStatsUnavailable::NotBuilt);
    }
    assert!(r.to_string().contains("allocator layers absent"), "{r}");
    let kinds: Vec<memledger_monitor::GapKind> = r.gaps().iter().map(|g| g.kind).collect();
    assert_eq!(
        kinds,
        [
            memledger_monitor::GapKind::AllocatorOverheadAndOutsideHeap,
            memledger_monitor::GapKind::FileBacked
        ]
    );
    let entry = r
        .breakdown
        .iter()
        .find(|e| e.label == "system_reconcile")
        .unwrap();
    assert_eq!(entry.bytes, 1 << 20);
    assert!(r.ledger_bytes >= 1 << 20);
    #[cfg(target_os = "linux")]
    {
        // Slack for the pages the readings touch between them: this test's alone moved none
        // (`cargo test -p memledger-monitor --test system`, 5 runs); 256 KiB, 64 pages, leaves
        // room for a noisy machine.
        const SLACK: u64 = 256 * 1024;
        let (before, after) = (kernel_before, kernel_after);
        assert!(
            smaps::within(r.process.rss_bytes, before.rss, after.rss, SLACK),
            "rss {} B, the kernel's {} B and {} B",
            r.process.rss_bytes,
            before.rss,
            after.rss
        );
        let file = r.process.file_backed_bytes.unwrap();
        assert!(
            smaps::within(file, before.file_backed(), after.file_backed(), SLACK),
            "file-backed {file} B, the kernel's {} B and {} B",
            before.file_backed(),
            after.file_backed()
        );
        // The ledger's blocks are written, so resident: within the kernel's anonymous memory,
        // and the allocator's gap is the rest of it.
        let anonymous = before.anonymous.min(after.anonymous);
        assert!(r.ledger_bytes <= anonymous + SLACK, "{r:?}, {before:?}");
        let gap = r
            .gap(memledger_monitor::GapKind::AllocatorOverheadAndOutsideHeap)
            .unwrap();
        assert!(
            smaps::within(
                gap,
                before.anonymous.saturating_sub(r.ledger_bytes),
                after.anonymous.saturating_sub(r.ledger_bytes),
                SLACK
            ),
            "the allocator's gap {gap} B, the kernel's anonymous memory {} B and {} B beyond the \
             ledger's {} B",
            before.anonymous,
            after.anonymous,
            r.ledger_bytes
        );
        assert_eq!(r.remainder(), 0, "the ledger fits in the anonymous memory");
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Every block the ledger books is a glibc chunk with its trailer: in use (`uordblks`) or
        // mapped on its own (`hblkhd`).
        let in_use = (glibc.uordblks + glibc.hblkhd) as u64;
        assert!(
            r.ledger_bytes + r.tag_bytes <= in_use,
            "ledger {} B and tags {} B, glibc's bytes in use {in_use} B",
            r.ledger_bytes,
            r.tag_bytes
        );
    }
    drop(held);
}

/// A sampler over the system allocator: jemalloc's stats are unavailable, each sample says why,
/// and the books and the ticks go on exactly.
#[test]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation hides")]
fn sampler_without_jemalloc_stats() {
    let _serial = serial();
    let sampler = memledger_monitor::Sampler::builder()
        .interval(std::time::Duration::from_secs(3600))
        .start()
        .unwrap();
    let held = memledger::in_scope("system_sampler", || vec![3u8; 54_321]);
    // The sampler's thread ticks once as it starts, maybe while this one does.
    let before = sampler.stats().ticks;
    let sample = sampler.sample_now();
    assert_eq!(
        sample.snapshot.scope("system_sampler").unwrap().live_bytes,
        54_321
    );
    let reconciliation = sample.reconciliation.as_ref().unwrap();
    assert!(reconciliation.allocator.is_err(), "no jemalloc layers here");
    assert!(sampler.stats().ticks > before);
    drop(held);
    sampler.stop();
}
