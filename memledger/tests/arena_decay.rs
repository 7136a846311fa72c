//! `Ledger::with_arena_decay`: the scope arenas a ledger makes take its decay time, and with 0 the
//! pages a scope frees go back to the kernel at once.
#![cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> =
    memledger::Ledger::new(memledger::Jemalloc).with_arena_decay(0);

/// A statistic or setting of jemalloc's, as a `size_t`/`ssize_t`.
fn read(name: &str) -> isize {
    let name = format!("{name}\0");
    // SAFETY:
    // - every value read here is a `size_t` or an `ssize_t`, the same width.
    unsafe { tikv_jemalloc_ctl::raw::read::<isize>(name.as_bytes()) }.unwrap()
}

#[test]
fn arenas_take_the_ledgers_decay_and_give_freed_pages_back() {
    // Sampled blocks take the trailer, outside the arena: none here.
    memledger::sampling::set_rate(0).unwrap();
    let blocks: Vec<Vec<u8>> =
        memledger::in_scope("decayed", || (0..2_000).map(|_| vec![7u8; 4096]).collect());
    let index = memledger::arenas::list()
        .into_iter()
        .find(|a| a.scope == "decayed")
        .expect("the scope has an arena")
        .jemalloc_index;
    assert_eq!(read(&format!("arena.{index}.dirty_decay_ms")), 0);
    assert_eq!(read(&format!("arena.{index}.muzzy_decay_ms")), 0);
    // jemalloc's own automatic arena keeps its setting.
    assert_ne!(read("arena.0.dirty_decay_ms"), 0);
    drop(std::hint::black_box(blocks));
    // This thread's caches and the transfer caches hand the blocks back, and the slabs they
    // emptied are purged at once: the arena keeps no dirty pages.
    memledger::arenas::trim();
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    let dirty = read(&format!("stats.arenas.{index}.pdirty"));
    let active = read(&format!("stats.arenas.{index}.pactive"));
    assert_eq!(dirty, 0, "{dirty} dirty pages, {active} active");
}
