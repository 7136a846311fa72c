//! The reconciliation over `ArenaLedger`: each scope arena's jemalloc statistics.
#![cfg(target_os = "linux")]

#[global_allocator]
static GLOBAL: memledger::ArenaLedger = memledger::ArenaLedger::new();

/// The reconciliation carries each scope arena's jemalloc statistics: a scope that holds 8 MiB of
/// full blocks shows at least that much allocated, active and resident in its own arena, and the
/// text names it.
#[test]
fn reconciliation_shows_scope_arenas() {
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
