//! `Ledger<Jemalloc>`'s scope arenas past their limits: a scope made after the last arena keeps the trailer, a thread
//! past its explicit caches allocates without one, and the books stay exact either way. Each
//! figure is checked against an independent count (the test's own sums, jemalloc's per-arena
//! stats), in one test so that no other test's arenas or threads interfere.
#![cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]

use std::alloc::{alloc, dealloc, Layout};

/// Two arenas at most, one explicit cache per thread.
#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> =
    memledger::Ledger::new(memledger::Jemalloc).with_arena_limits(2, 1);

const FULL: usize = 4096;

/// Addresses of `count` blocks of 4 KiB, in a vector of 50 places (400 bytes), all in `scope`.
fn allocate_in(scope: &str, count: usize) -> Vec<usize> {
    assert!(count <= 50);
    memledger::in_scope(scope, || {
        let layout = Layout::from_size_align(FULL, 8).unwrap();
        let mut blocks = Vec::with_capacity(50);
        for _ in 0..count {
            // SAFETY: a non-zero layout.
            let p = unsafe { alloc(layout) };
            assert!(!p.is_null());
            blocks.push(p as usize);
        }
        blocks
    })
}

fn free(blocks: Vec<usize>) {
    let layout = Layout::from_size_align(FULL, 8).unwrap();
    for p in blocks {
        // SAFETY: allocated by `allocate_in` with this layout.
        unsafe { dealloc(p as *mut u8, layout) };
    }
}

/// Runs `prepare`, then `step` on its result, on a new thread, and takes `read()` on this thread
/// while that thread is parked just before `step` and just after it: a thread's start and exit
/// allocate (in the unscoped root, which may hold an arena), so that only `step` runs between the
/// two readings. Returns both readings and `step`'s result.
fn readings_around<P, T: Send + 'static, R>(
    prepare: impl FnOnce() -> P + Send + 'static,
    step: impl FnOnce(P) -> T + Send + 'static,
    read: impl Fn() -> R,
) -> (R, R, T) {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let thread = {
        let barrier = barrier.clone();
        std::thread::spawn(move || {
            let prepared = prepare();
            barrier.wait();
            barrier.wait();
            let done = step(prepared);
            barrier.wait();
            barrier.wait();
            done
        })
    };
    barrier.wait();
    let before = read();
    barrier.wait();
    barrier.wait();
    let after = read();
    barrier.wait();
    (before, after, thread.join().unwrap())
}

fn live(scope: &str) -> u64 {
    memledger::snapshot()
        .scope(scope)
        .map_or(0, |s| s.live_bytes)
}

/// One test, so that no other test of this binary makes arenas or threads meanwhile.
#[test]
fn limits() {
    // A sampled block takes the trailer, not its scope's arena, and each process draws its own
    // sample points: with sampling on, the counts of arena blocks below would change with the
    // blocks a run happens to sample.
    memledger::sampling::set_rate(0).unwrap();
    past_the_limits_books_stay_exact();
    thread_tables_are_reused();
    a_full_front_cache_makes_room();
}

fn past_the_limits_books_stay_exact() {
    // The unscoped root's blocks (the harness's) have made the first arena; the crate's own scope
    // never gets one.
    let a = allocate_in("limits/a", 50);
    let b = allocate_in("limits/b", 50);
    let c = allocate_in("limits/c", 50);
    let usage = memledger::arenas::usage();
    assert_eq!(usage.arenas, 2, "{usage:?}");
    let arenas = memledger::arenas::list();
    assert_eq!(arenas.len(), 2);
    assert!(arenas.iter().all(|a| a.scope != "limits/c"), "{arenas:?}");
    assert!(
        arenas.iter().all(|a| a.scope != memledger::OWN_SCOPE),
        "{arenas:?}"
    );
    let has_arena = |scope: &str| arenas.iter().any(|a| a.scope == scope);
    // Every scope books exactly, in an arena or not.
    for (scope, blocks) in [("limits/a", &a), ("limits/b", &b), ("limits/c", &c)] {
        assert_eq!(
            live(scope),
            (blocks.len() * FULL + blocks.capacity() * 8) as u64,
            "{scope}"
        );
    }
    // This thread has one cache; a second arena in use means at least one runs without a cache,
    // which books exactly all the same. Threads past their caches free blocks of both arenas.
    assert!(usage.thread_caches >= 1);
    // The count covers every arena, the unscoped root's included (it may hold one of the two),
    // and a thread's start and exit allocate in the root: the readings are taken while the other
    // thread is parked at a barrier, inside its scope, so that only the frees and allocations of
    // the blocks below happen between them.
    let (live_in_arenas, live_after, (a, more)) = readings_around(
        || memledger::scope!("limits/freer"),
        move |_guard| {
            let a_bytes = a.len();
            free(a);
            (a_bytes, allocate_in("limits/b", 10))
        },
        || memledger::arenas::usage().live_blocks,
    );
    assert_eq!(live("limits/a"), 0);
    assert_eq!(live("limits/freer"), 0);
    // `a`'s blocks and the vector that held them; `more`'s blocks and theirs.
    let freed = if has_arena("limits/a") {
        a as u64 + 1
    } else {
        0
    };
    let added = if has_arena("limits/b") { 10 + 1 } else { 0 };
    assert_eq!(
        live_after,
        live_in_arenas - freed + added,
        "arena blocks counted exactly across threads"
    );
    free(b);
    free(more);
    free(c);
    assert_eq!(live("limits/b"), 0);
    assert_eq!(live("limits/c"), 0);
}

/// A thread's table of caches goes back at thread exit and the next thread reuses it: tables stay
/// bounded by the threads alive at once, and caches by tables × the per-thread limit.
fn thread_tables_are_reused() {
    for round in 0..50 {
        std::thread::spawn(move || {
            let blocks = allocate_in("limits/churn", 3 + round % 3);
            free(blocks);
        })
        .join()
        .unwrap();
    }
    let usage = memledger::arenas::usage();
    // This test's threads run one at a time, beside this thread and the harness's.
    assert!(usage.thread_tables <= 4, "{usage:?}");
    assert!(usage.thread_caches <= usage.thread_tables, "{usage:?}");
    assert_eq!(live("limits/churn"), 0);
}

/// A free that finds the thread's front cache full empties it (into the transfer caches and
/// jemalloc's caches) and is kept: blocks of a class the thread stopped using do not hold the room
/// for good. Freed 64-byte blocks fill the cache's 128 KiB after 2 048 at most; the next free
/// empties it and the last 52 stay.
fn a_full_front_cache_makes_room() {
    const BLOCKS: usize = 2_100;
    let room = memledger::arenas::FRONT_BYTES / 64;
    assert!(BLOCKS > room);
    let layout = Layout::from_size_align(64, 8).unwrap();
    let (before, after, _) = readings_around(
        move || {
            // Made at its full size, so that no resize leaves a block in this thread's cache.
            let mut blocks = Vec::with_capacity(BLOCKS);
            memledger::in_scope("limits/a", || {
                for _ in 0..BLOCKS {
                    // SAFETY: a non-zero layout; each block is freed below.
                    blocks.push(unsafe { alloc(layout) } as usize);
                }
            });
            blocks
        },
        move |blocks| {
            for &p in &blocks {
                // SAFETY: allocated above with this layout.
                unsafe { dealloc(p as *mut u8, layout) };
            }
        },
        || memledger::arenas::usage().front_cache_bytes,
    );
    assert!(
        memledger::arenas::list()
            .iter()
            .any(|a| a.scope == "limits/a"),
        "the scope has an arena"
    );
    // Without the emptying, the thread's cache would hold the full 128 KiB now. With it, it holds
    // the last 52 blocks, and of what it held before (the thread's start frees a few blocks of its
    // own, and the last refill of the allocations left up to a slab's worth of blocks, 63, on the
    // stack) at most what the emptying kept.
    let kept = (BLOCKS - room) * 64;
    assert!(after >= kept, "{after} < {kept}");
    assert!(after <= before + kept + 63 * 64, "{before} -> {after}");
    assert_eq!(live("limits/a"), 0);
}
