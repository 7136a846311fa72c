//! The exactness suite and the differential check over `Ledger<Jemalloc>` with scope arenas (the
//! default), and what its arenas hold measured against jemalloc's own per-arena stats.
#![cfg(all(feature = "arenas", target_os = "linux", target_pointer_width = "64"))]

mod common;

use common::differential;

use std::alloc::{alloc, dealloc, realloc, Layout};

// More arenas than the default: the exactness suite makes many scopes, and each that allocates
// takes an arena until they run out.
#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> =
    memledger::Ledger::new(memledger::Jemalloc).with_arena_limits(254, 8);

exactness_suite!("arenas");

#[test]
fn random_programs_keep_exact_books() {
    for program in differential::programs(2_000, 0xa7e4a) {
        differential::run(&program);
    }
}

/// The fuzz targets' seeds and the inputs that once found a bug, over this ledger.
#[test]
fn kept_inputs_keep_exact_books() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut ran = 0;
    for dir in [
        "fuzz/seeds/ledger_ops",
        "memledger/tests/regressions/ledger_ops",
        "memledger/tests/regressions/ledger_ops_arenas",
    ] {
        let entries = std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            // The regressions' folders each hold a README that says what goes there.
            if path.file_name().is_some_and(|n| n == "README.md") {
                continue;
            }
            differential::run(&std::fs::read(&path).unwrap());
            ran += 1;
        }
    }
    assert!(ran > 0, "no kept inputs found");
}

/// Reads a per-arena statistic after advancing jemalloc's epoch.
fn arena_stat(index: u32, stat: &str) -> usize {
    let name = format!("stats.arenas.{index}.{stat}\0");
    // SAFETY:
    // - every statistic read here is a `size_t`.
    unsafe { tikv_jemalloc_ctl::raw::read::<usize>(name.as_bytes()) }.unwrap()
}

/// Full blocks (sizes that fill their class) of one scope live in that scope's arena only: the
/// arena's `allocated` grows by exactly their bytes, with no trailer and no class step, while
/// blocks with spare room in their class stay outside it.
#[test]
fn blocks_live_in_their_scope_arena_at_their_own_size() {
    // A sampled block takes the trailer outside the arena: none is sampled here.
    memledger::sampling::set_rate(0).unwrap();
    let sizes = [8usize, 16, 32, 48, 64, 128, 256, 1024, 4096, 16384];
    let keep: Vec<(*mut u8, Layout)> = memledger::in_scope("arena_full/only", || {
        // Makes the scope's arena.
        let warm = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: a non-zero layout; freed at once.
        unsafe { dealloc(alloc(warm), warm) };
        let mut keep = Vec::with_capacity(sizes.len() * 100);
        for &size in &sizes {
            for _ in 0..100 {
                let layout = Layout::from_size_align(size, 8).unwrap();
                // SAFETY: a non-zero layout.
                let ptr = unsafe { alloc(layout) };
                assert!(!ptr.is_null());
                keep.push((ptr, layout));
            }
        }
        keep
    });
    let arena = memledger::arenas::list()
        .into_iter()
        .find(|a| a.scope == "arena_full/only")
        .expect("the scope has an arena");
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    let small = arena_stat(arena.jemalloc_index, "small.allocated");
    let large = arena_stat(arena.jemalloc_index, "large.allocated");
    let booked: usize = sizes.iter().map(|s| s * 100).sum();
    // Blocks in the arena's explicit thread cache count as allocated too; this thread's cache
    // holds at most a few hundred small blocks per class, far less than a class step would add.
    assert!(small + large >= booked, "{small} + {large} < {booked}");
    assert!(
        small + large <= booked + 64 * 1024 * 4,
        "the arena holds {} bytes more than its blocks",
        small + large - booked
    );
    // The scope also holds `keep` itself: 24 000 bytes, with room for a trailer in their class.
    let snap = memledger::snapshot();
    assert_eq!(
        snap.scope("arena_full/only").unwrap().live_bytes,
        (booked + keep.capacity() * std::mem::size_of::<(*mut u8, Layout)>()) as u64
    );
    // A block of up to 16 KiB with room for a trailer in its class lives in the arena all the
    // same (jemalloc fills the thread's cache bin for the class: at least the block itself).
    let odd = memledger::in_scope("arena_full/only", || vec![1u8; 100]);
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    assert!(arena_stat(arena.jemalloc_index, "small.allocated") >= small + 112);
    // A larger one with room carries a trailer, outside the arena.
    let large_odd = memledger::in_scope("arena_full/only", || vec![1u8; 20_000]);
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    assert_eq!(arena_stat(arena.jemalloc_index, "large.allocated"), large);
    drop((odd, large_odd));
    memledger::in_scope("arena_full/freer", || {
        for (ptr, layout) in keep {
            // SAFETY: allocated above with this layout.
            unsafe { dealloc(ptr, layout) };
        }
    });
    assert_eq!(
        memledger::snapshot()
            .scope("arena_full/only")
            .unwrap()
            .live_bytes,
        0
    );
}

/// Blocks move between the trailer and the arena as they are resized, keep their owner, and are
/// credited back to it whatever thread and scope free them.
#[test]
fn resizes_move_blocks_and_keep_owners() {
    let mut v: Vec<u32> = memledger::in_scope("arena_moves/owner", || Vec::with_capacity(3));
    memledger::in_scope("arena_moves/other", || {
        for i in 0..10_000u32 {
            v.push(i);
        }
        v.shrink_to_fit();
        v.reserve_exact(100);
    });
    let s = memledger::snapshot();
    assert_eq!(
        s.scope("arena_moves/owner").unwrap().live_bytes,
        v.capacity() as u64 * 4
    );
    assert_eq!(s.scope("arena_moves/other").map_or(0, |o| o.live_bytes), 0);
    let layout = Layout::from_size_align(24, 8).unwrap();
    let p = memledger::in_scope("arena_moves/owner", || {
        // SAFETY: a non-zero layout.
        let p = unsafe { alloc(layout) };
        // 24 bytes leave 8 spare in the 32-byte class: a trailer block. Growing it to 64 fills
        // the 64-byte class: it moves to the arena. The bytes come along.
        // SAFETY: `p` is live with `layout`.
        unsafe {
            p.write_bytes(7, 24);
            let q = realloc(p, layout, 64);
            assert!((0..24).all(|i| *q.add(i) == 7));
            q
        }
    });
    std::thread::spawn({
        let v = std::mem::take(&mut v);
        let p = p as usize;
        move || {
            let _g = memledger::scope!("arena_moves/freer");
            drop(v);
            // SAFETY: the block resized to 64 bytes above.
            unsafe { dealloc(p as *mut u8, Layout::from_size_align(64, 8).unwrap()) };
        }
    })
    .join()
    .unwrap();
    let s = memledger::snapshot();
    assert_eq!(s.scope("arena_moves/owner").unwrap().live_bytes, 0);
    assert_eq!(s.scope("arena_moves/freer").map_or(0, |o| o.live_bytes), 0);
}

/// Over-aligned and zeroed full blocks: alignment is kept (over-aligned ones take the trailer),
/// zeroed ones read as zeros even where the arena reuses freed memory.
#[test]
fn zeroed_and_aligned_full_blocks() {
    memledger::in_scope("arena_layouts", || {
        for _ in 0..3 {
            let mut blocks = Vec::new();
            for size in [
                7usize, 8, 15, 16, 63, 64, 256, 4095, 4096, 8192, 16383, 16384, 32768,
            ] {
                for align in [1usize, 8, 16, 64, 4096] {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: a non-zero layout.
                    let p = unsafe { std::alloc::alloc_zeroed(layout) };
                    assert_eq!(p as usize % align, 0);
                    // SAFETY: a live block of `size` bytes.
                    let bytes = unsafe { std::slice::from_raw_parts_mut(p, size) };
                    assert!(bytes.iter().all(|&b| b == 0));
                    bytes.fill(0xAB);
                    blocks.push((p, layout));
                }
            }
            for (p, layout) in blocks {
                // SAFETY: allocated above.
                unsafe { dealloc(p, layout) };
            }
        }
    });
    assert_eq!(
        memledger::snapshot()
            .scope("arena_layouts")
            .unwrap()
            .live_bytes,
        0
    );
}

/// A full block resized below its alignment must be freed with that alignment: jemalloc's sized
/// free would otherwise take a 16-byte block (kept 16-aligned) for an 8-byte one and corrupt the
/// arena's bins. Many rounds, so that the slabs fill, empty and are reused.
#[test]
fn blocks_resized_below_their_alignment() {
    memledger::in_scope("arena_small_aligned", || {
        let layout = Layout::from_size_align(32, 16).unwrap();
        for _ in 0..50 {
            let blocks: Vec<usize> = (0..2000)
                .map(|_| {
                    // SAFETY: a non-zero layout; the block is resized to 8 bytes, non-zero.
                    unsafe {
                        let p = alloc(layout);
                        let q = realloc(p, layout, 8);
                        assert_eq!(q as usize % 16, 0);
                        q as usize
                    }
                })
                .collect();
            for q in blocks {
                // SAFETY: resized to 8 bytes at alignment 16 above.
                unsafe { dealloc(q as *mut u8, Layout::from_size_align(8, 16).unwrap()) };
            }
        }
    });
    assert_eq!(
        memledger::snapshot()
            .scope("arena_small_aligned")
            .unwrap()
            .live_bytes,
        0
    );
}

/// What a thread keeps of its freed arena blocks is bounded (its front cache,
/// `memledger::arenas::FRONT_BYTES`, and jemalloc's explicit cache), and all of it goes back to
/// the arena when the thread exits, but what it handed to the transfer caches (at most
/// `TRANSFER_BYTES`), which `arenas::trim` gives back. An idle
/// arena's own metadata stays small.
#[test]
fn freed_blocks_held_per_thread_are_bounded() {
    let index = std::thread::spawn(|| {
        let _g = memledger::scope!("arena_bounded");
        let blocks: Vec<Box<[u8; 64]>> = (0..20_000).map(|_| Box::new([1u8; 64])).collect();
        drop(blocks);
        let arena = memledger::arenas::list()
            .into_iter()
            .find(|a| a.scope == "arena_bounded")
            .expect("the scope has an arena");
        tikv_jemalloc_ctl::epoch::advance().unwrap();
        let held = arena_stat(arena.jemalloc_index, "small.allocated")
            + arena_stat(arena.jemalloc_index, "large.allocated");
        // 1.28 MB was freed; the thread may keep its front cache (full now), the transfer
        // caches what it handed over (at most TRANSFER_BYTES) and what jemalloc's explicit cache
        // for the arena holds: a bin of the 64-byte class (200 blocks at most) and large blocks
        // of the vector's growth up to its `tcache_max` (32 KiB), one per class.
        let front = memledger::arenas::FRONT_BYTES;
        // The transfer caches are the process's: other tests' arenas share their bound.
        let transfer = memledger::arenas::usage().transfer_cache_bytes;
        assert!(transfer <= memledger::arenas::TRANSFER_BYTES);
        assert!(
            held <= front + transfer + 200 * 64 + (20 + 24 + 28 + 32) * 1024,
            "{held} bytes held after freeing everything, {transfer} in transfer caches"
        );
        arena.jemalloc_index
    })
    .join()
    .unwrap();
    // The thread's own caches went back at its exit; the transfer caches' blocks are given back
    // on a tick, or at once by `trim`.
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    assert!(
        arena_stat(index, "small.allocated") <= memledger::arenas::usage().transfer_cache_bytes
    );
    memledger::arenas::trim();
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    assert_eq!(
        arena_stat(index, "small.allocated"),
        0,
        "the thread's caches went back"
    );
    let metadata = arena_stat(index, "base");
    assert!(
        metadata <= 256 * 1024,
        "an arena's metadata: {metadata} bytes"
    );
}

/// A scope arena that nobody uses any more gives its dirty pages back while other threads go on
/// allocating elsewhere: the books' cold path advances the arenas' decay, without a sampler.
#[test]
fn the_books_return_the_dirty_pages_of_idle_scope_arenas() {
    // Arenas made from now on decay their dirty pages in 100 ms instead of 10 s.
    // SAFETY:
    // - "arenas.dirty_decay_ms" is an `ssize_t`.
    unsafe { tikv_jemalloc_ctl::raw::write(b"arenas.dirty_decay_ms\0", 100isize) }.unwrap();
    let path = "arena_decay/idle";
    // A burst of full blocks in the scope, all freed, on a thread that then exits (its caches are
    // flushed back to the arena).
    std::thread::spawn(move || {
        let blocks: Vec<Vec<u8>> = memledger::in_scope(path, || {
            (0..2_000)
                .map(|i| std::hint::black_box(vec![i as u8; 4096]))
                .collect()
        });
        drop(blocks);
    })
    .join()
    .unwrap();
    let index = memledger::arenas::list()
        .into_iter()
        .find(|a| a.scope == path)
        .expect("the scope's arena")
        .jemalloc_index;
    tikv_jemalloc_ctl::epoch::advance().unwrap();
    let dirty = arena_stat(index, "pdirty");
    assert!(dirty > 100, "the burst left {dirty} dirty pages");
    // This thread goes on with 1000-byte blocks in the root scope (whose arena is not the burst's),
    // for up to 10 s: its refills drive the decay.
    let layout = Layout::from_size_align(1000, 8).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        for _ in 0..50_000 {
            // SAFETY: a non-zero size; the block is freed at once with its layout.
            unsafe { dealloc(std::hint::black_box(alloc(layout)), layout) };
        }
        tikv_jemalloc_ctl::epoch::advance().unwrap();
        let left = arena_stat(index, "pdirty");
        if left == 0 || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        left, 0,
        "of {dirty} dirty pages, {left} were never returned"
    );
}
