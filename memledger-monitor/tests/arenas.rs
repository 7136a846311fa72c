//! The monitor over `Ledger<Jemalloc>` with scope arenas: each scope arena's jemalloc statistics in the reconciliation,
//! and the sampler's tick driving the decay of arenas nobody uses any more.
#![cfg(target_os = "linux")]

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

/// The reconciliation carries each scope arena's jemalloc statistics: a scope that holds 8 MiB of
/// full blocks shows at least that much allocated, active and resident in its own arena, and the
/// text names it.
#[test]
fn reconciliation_shows_scope_arenas() {
    // A sampled block takes the trailer outside its arena: none is sampled here.
    memledger::sampling::set_rate(0).unwrap();
    let pages: Vec<Vec<u8>> = memledger::in_scope("arena_reconcile", || {
        (0..2048).map(|_| vec![1u8; 4096]).collect()
    });
    let r = memledger_monitor::Reconciliation::capture().unwrap();
    let arena = r
        .scope_arenas
        .iter()
        .find(|a| a.scope == "arena_reconcile")
        .expect("the scope's arena is in the reconciliation");
    let held = 2048 * 4096;
    assert!(arena.allocated.unwrap() >= held, "{arena:?}");
    assert!(
        arena.active.unwrap() >= arena.allocated.unwrap(),
        "{arena:?}"
    );
    assert!(arena.resident.unwrap() >= held, "{arena:?}");
    assert!(r.to_string().contains("arena_reconcile"));
    // The tags gap counts trailer blocks only: full blocks carry none.
    let trailer_blocks = r.tag_bytes / 2;
    assert!(
        trailer_blocks < r.ledger_blocks.saturating_sub(2048),
        "{r:?}"
    );
    drop(pages);
}

/// A `size_t` statistic of jemalloc's arena `index`, as of the last epoch.
fn arena_stat(index: u32, stat: &str) -> usize {
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    let name = format!("stats.arenas.{index}.{stat}\0");
    // SAFETY:
    // - every statistic read here is a `size_t`, and the name is NUL-terminated.
    unsafe { tikv_jemalloc_ctl::raw::read::<usize>(name.as_bytes()) }.unwrap()
}

/// jemalloc gives an arena's dirty pages back only as it operates on that arena: a scope arena
/// whose blocks were all freed, and that nothing touches after, keeps them. A running sampler's
/// tick advances the decay of every scope arena, so they go back on jemalloc's schedule.
#[test]
fn a_sampler_returns_the_dirty_pages_of_idle_scope_arenas() {
    memledger::sampling::set_rate(0).unwrap();
    // Full blocks (exactly 4 KiB) of one scope, made on this thread.
    let pages: Vec<Vec<u8>> = memledger::in_scope("idle_arena", || {
        (0..4096).map(|i| vec![i as u8; 4096]).collect()
    });
    let arena = memledger::arenas::list()
        .into_iter()
        .find(|a| a.scope == "idle_arena")
        .expect("the scope has an arena")
        .jemalloc_index;
    // A short decay time, so that the test need not wait jemalloc's default 10 s.
    let key = format!("arena.{arena}.dirty_decay_ms\0");
    // SAFETY:
    // - "arena.<i>.dirty_decay_ms" is an `ssize_t`, and the key is NUL-terminated.
    unsafe { tikv_jemalloc_ctl::raw::write::<isize>(key.as_bytes(), 100) }.unwrap();
    // Freed on another thread, which has no cache for the arena: the pages go back to it, dirty.
    std::thread::spawn(move || drop(pages)).join().unwrap();
    let dirty = arena_stat(arena, "pdirty");
    assert!(dirty >= 1024, "16 MiB freed, {dirty} dirty pages");
    // Nothing touches the arena: its dirty pages stay, past the decay time.
    std::thread::sleep(std::time::Duration::from_millis(400));
    let idle = arena_stat(arena, "pdirty");
    assert!(
        idle >= dirty / 2,
        "{idle} dirty pages left of {dirty} with no sampler"
    );
    // A sampler's ticks decay it.
    let sampler = memledger_monitor::Sampler::builder()
        .interval(std::time::Duration::from_millis(20))
        .start()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while arena_stat(arena, "pdirty") > dirty / 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sampler.stop();
    let left = arena_stat(arena, "pdirty");
    assert!(
        left <= dirty / 20,
        "{left} dirty pages left of {dirty} under a sampler"
    );
}

/// Blocks built on one thread and freed on another wait in the freeing thread's front cache (or a
/// transfer cache) for reuse: the reconciliation names them as their own layer, with the size
/// the ledger's caches report, and no scope's live bytes count them.
#[test]
fn cached_blocks_are_their_own_layer() {
    use memledger_monitor::GapKind;
    use std::sync::mpsc;

    memledger::sampling::set_rate(0).unwrap();
    let (blocks_tx, blocks_rx) = mpsc::channel::<Vec<Box<[u8; 96]>>>();
    let (freed_tx, freed_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let freer = std::thread::spawn(move || {
        let blocks = blocks_rx.recv().unwrap();
        drop(std::hint::black_box(blocks));
        freed_tx.send(()).unwrap();
        // Alive, so that its front cache keeps the blocks while the reconciliation is read.
        done_rx.recv().unwrap();
    });
    let blocks: Vec<Box<[u8; 96]>> = memledger::in_scope("arena_cached", || {
        (0..500).map(|i| Box::new([i as u8; 96])).collect()
    });
    blocks_tx.send(blocks).unwrap();
    freed_rx.recv().unwrap();
    let r = memledger_monitor::Reconciliation::capture().unwrap();
    let a = r.allocator.clone().expect("jemalloc's statistics");
    // 500 blocks of 96 bytes, within one front cache's bound: all held by the freeing thread.
    assert!(r.cached_bytes >= 500 * 96, "{r:?}");
    assert_eq!(
        r.gap(GapKind::CachedBlocks),
        Some(r.cached_bytes + a.tcache_bytes)
    );
    assert_eq!(
        memledger::snapshot()
            .scope("arena_cached")
            .unwrap()
            .live_bytes,
        0,
        "freed blocks are no scope's live bytes"
    );
    assert!(r
        .to_string()
        .contains("freed blocks cached for reuse (thread and transfer caches)"));
    done_tx.send(()).unwrap();
    freer.join().unwrap();
}
