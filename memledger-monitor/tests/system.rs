//! The reconciliation and the sampler over the system allocator.

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// With the system allocator inside, the jemalloc layers are absent, the report says why, and
/// the gaps still add up to the RSS.
#[test]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation hides")]
fn reconciliation_without_jemalloc() {
    let held = memledger::in_scope("system_reconcile", || vec![5u8; 1 << 20]);
    let r = memledger_monitor::Reconciliation::capture().unwrap();
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
    let sum = r.ledger_bytes as i128
        + r.gaps().iter().map(|g| g.bytes as i128).sum::<i128>()
        + r.remainder() as i128;
    assert_eq!(sum, r.process.rss_bytes as i128);
    assert!(r.ledger_bytes >= 1 << 20 && r.ledger_bytes <= r.process.rss_bytes);
    drop(held);
}

/// A sampler over the system allocator: jemalloc's stats are unavailable, each sample says why,
/// and the books and the ticks go on exactly.
#[test]
#[cfg_attr(miri, ignore = "reads /proc, which Miri's isolation hides")]
fn sampler_without_jemalloc_stats() {
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
