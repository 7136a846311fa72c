//! Sampled blocks over the default ledger (`Ledger<Jemalloc>` with scope arenas), at the lowest
//! rate, so that a large share of blocks is sampled: the books stay exact through the sampled
//! paths (allocation, free on any thread, resize in and out of the sample), and each sample's
//! record goes when its block does.
#![cfg(feature = "sampling")]

mod common;
#[path = "common/walk.rs"]
mod walk;

use common::differential;

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> =
    memledger::Ledger::new(memledger::Jemalloc).with_arena_limits(254, 8);

fn low_rate() {
    memledger::sampling::set_rate(memledger::sampling::MIN_RATE).unwrap();
}

exactness_suite!("sampled", {
    low_rate();
});

#[test]
fn random_programs_keep_exact_books_while_sampled() {
    low_rate();
    for program in differential::programs(1_000, 0x5a3d1) {
        differential::run(&program);
    }
}

fn live_samples(scope: &str) -> u64 {
    memledger::sampling::sites()
        .scope(scope)
        .map(|s| s.live.samples)
        .sum()
}

/// Blocks sampled on one thread and freed on another leave no record behind, and while they live
/// their records are booked to their scope, whatever the freeing thread's scope.
#[test]
fn sampled_frees_remove_their_samples_on_any_thread() {
    low_rate();
    let scope = "sampled_cross_thread";
    let blocks: Vec<usize> = memledger::in_scope(scope, || {
        (0..4000)
            .map(|i| {
                let size = 16 + (i % 64) * 24;
                let layout = Layout::from_size_align(size, 8).unwrap();
                // SAFETY:
                // - a non-zero size.
                let p = unsafe { alloc(layout) };
                assert!(!p.is_null());
                black_box(p) as usize
            })
            .collect()
    });
    let during = live_samples(scope);
    // 4000 blocks of 16 to 1528 bytes, about 3 MB: near 3000 samples at 1 KiB.
    assert!(during > 1000, "only {during} samples");
    let live = memledger::snapshot().scope(scope).unwrap().live_bytes;
    // The blocks, and the vector of their addresses.
    assert_eq!(
        live,
        (0..4000).map(|i| 16 + (i % 64) as u64 * 24).sum::<u64>() + 4000 * 8
    );
    std::thread::spawn(move || {
        let _elsewhere = memledger::scope!("sampled_cross_thread_freer");
        for (i, &p) in blocks.iter().enumerate() {
            let size = 16 + (i % 64) * 24;
            // SAFETY:
            // - allocated above with this layout, freed once.
            unsafe { dealloc(p as *mut u8, Layout::from_size_align(size, 8).unwrap()) };
        }
        drop(blocks);
    })
    .join()
    .unwrap();
    assert_eq!(live_samples(scope), 0);
    assert_eq!(memledger::snapshot().scope(scope).unwrap().live_bytes, 0);
    assert_eq!(
        memledger::snapshot()
            .scope("sampled_cross_thread_freer")
            .map_or(0, |s| s.live_bytes),
        0
    );
}

/// A buffer that grows by doubling is sampled by its growth: its estimate follows its size, and
/// its record follows it through every move, then goes with it.
#[test]
fn growing_buffers_are_sampled_by_their_growth() {
    low_rate();
    let scope = "sampled_growth";
    let kept: Vec<Vec<u8>> = memledger::in_scope(scope, || {
        (0..64)
            .map(|_| {
                let mut v = Vec::new();
                for i in 0..65_536u32 {
                    v.push(i as u8);
                }
                black_box(v)
            })
            .collect()
    });
    let sites = memledger::sampling::sites();
    let estimate: u64 = sites.scope(scope).map(|s| s.live.bytes).sum();
    let samples: u64 = sites.scope(scope).map(|s| s.live.samples).sum();
    let truth = memledger::snapshot().scope(scope).unwrap().live_bytes;
    // 64 buffers of 64 KiB: each has brought in 128 KiB by its doublings, so each is sampled with
    // probability 1 - exp(-128): all of them, with weights of 1 (and perhaps the vector that
    // holds them, 1.5 KiB).
    assert!((64..=65).contains(&samples), "{samples} samples");
    assert!(
        estimate.abs_diff(truth) <= truth / 100,
        "{estimate} against {truth}"
    );
    drop(kept);
    assert_eq!(live_samples(scope), 0);
    assert_eq!(memledger::snapshot().scope(scope).unwrap().live_bytes, 0);
}

/// Resizes of sampled blocks, up and down, through `realloc` directly, booked exactly.
#[test]
fn sampled_blocks_resize_exactly() {
    low_rate();
    let scope = "sampled_resize";
    let mut blocks = Vec::with_capacity(2000);
    let _g = memledger::scope!("sampled_resize");
    for i in 0..2000usize {
        let layout = Layout::from_size_align(2048 + i, 16).unwrap();
        // SAFETY:
        // - a non-zero size.
        let p = unsafe { alloc(layout) };
        assert!(!p.is_null());
        // SAFETY:
        // - a block of `layout.size()` bytes.
        unsafe { p.write_bytes(i as u8, layout.size()) };
        blocks.push((p, layout));
    }
    let mut expected: u64 = blocks.iter().map(|(_, l)| l.size() as u64).sum();
    for (i, (p, layout)) in blocks.iter_mut().enumerate() {
        let new = if i % 2 == 0 {
            layout.size() / 3
        } else {
            layout.size() * 3
        };
        // SAFETY:
        // - a live block of `layout`, a valid new size at its alignment.
        let q = unsafe { realloc(*p, *layout, new) };
        assert!(!q.is_null());
        // SAFETY:
        // - the first `min(old, new)` bytes moved with the block.
        assert_eq!(unsafe { *q.add(new.min(layout.size()) - 1) }, i as u8);
        expected = expected - layout.size() as u64 + new as u64;
        *p = q;
        *layout = Layout::from_size_align(new, 16).unwrap();
    }
    assert_eq!(
        memledger::snapshot().scope(scope).unwrap().live_bytes,
        expected
    );
    assert!(live_samples(scope) > 500);
    for (p, layout) in blocks {
        // SAFETY:
        // - live, of this layout.
        unsafe { dealloc(p, layout) };
    }
    assert_eq!(memledger::snapshot().scope(scope).unwrap().live_bytes, 0);
    assert_eq!(live_samples(scope), 0);
}

#[test]
fn bad_rates_are_errors_that_say_what_to_do() {
    let err = memledger::sampling::set_rate(10).unwrap_err();
    assert_eq!(err, memledger::Error::SampleRate { rate: 10 });
    assert!(
        err.to_string().contains("set 0 to switch sampling off"),
        "{err}"
    );
    assert!(memledger::sampling::set_rate(u64::MAX).is_err());
    assert!(memledger::sampling::set_rate(memledger::sampling::MAX_RATE + 1).is_err());
    // The other tests of this file run at the lowest rate meanwhile: only it is set here.
    assert!(memledger::sampling::set_rate(memledger::sampling::MIN_RATE).is_ok());
}

/// The crate's own scope, which holds the sample tables, is never sampled.
#[test]
fn the_crates_own_scope_is_never_sampled() {
    low_rate();
    let _ = memledger::snapshot();
    let sites = memledger::sampling::sites();
    assert!(sites
        .sites
        .iter()
        .all(|s| !s.scope.starts_with(memledger::OWN_SCOPE)));
    assert!(sites.usage.table_bytes > 0);
    let own = memledger::snapshot().own().live_bytes;
    assert!(
        own >= sites.usage.table_bytes,
        "{own} < {}",
        sites.usage.table_bytes
    );
}

/// The reserved id that sampled blocks carry cannot be entered by name: its paths make scopes of
/// their own, and blocks booked there are freed with the layout they were made with.
#[test]
fn the_sampled_blocks_id_cannot_be_entered() {
    low_rate();
    for path in [
        "<memledger>/<sampled>/",
        "<memledger>/<sampled>",
        "<memledger>/<sampled/blocks>",
    ] {
        let blocks: Vec<Vec<u8>> = memledger::in_scope(path, || {
            (0..500).map(|i| black_box(vec![i as u8; 700])).collect()
        });
        assert!(live_samples(path) > 100, "{path}: {}", live_samples(path));
        drop(blocks);
        assert_eq!(live_samples(path), 0, "{path}");
        let snap = memledger::snapshot();
        let scopes: Vec<_> = snap
            .scopes()
            .iter()
            .filter(|s| s.path.starts_with("<memledger>/<sampled"))
            .collect();
        // The reserved entry, and the one the path made, under another path.
        assert!(scopes.len() >= 2);
        assert_eq!(
            scopes
                .iter()
                .filter(|s| s.path == "<memledger>/<sampled>/")
                .count(),
            1
        );
        for scope in scopes {
            assert_eq!(scope.live_bytes, 0, "{}", scope.path);
        }
    }
}

/// A cell's very first allocation, and the first after a change of rate, can be sampled: 50 new
/// scopes that each allocate one 8 MiB block give 50 samples (each is sampled with probability
/// `1 - exp(-8 MiB / 1 KiB)`).
#[test]
fn first_allocations_are_sampled() {
    low_rate();
    let blocks: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            memledger::in_scope(&format!("sampled_first/{i}"), || {
                black_box(vec![1u8; 8 << 20])
            })
        })
        .collect();
    let sites = memledger::sampling::sites();
    let sampled = (0..50)
        .filter(|i| {
            sites
                .scope(&format!("sampled_first/{i}"))
                .any(|s| s.live.samples == 1)
        })
        .count();
    assert_eq!(sampled, 50);
    drop(blocks);
    let thread = std::thread::spawn(|| {
        memledger::in_scope("sampled_first_thread", || black_box(vec![1u8; 8 << 20]))
    })
    .join()
    .unwrap();
    assert_eq!(live_samples("sampled_first_thread"), 1);
    drop(thread);
}

/// An allocation that fails is not counted in its site's allocations.
#[test]
fn failed_allocations_are_not_counted() {
    low_rate();
    memledger::in_scope("sampled_failed", || {
        for _ in 0..3 {
            let mut v: Vec<u8> = Vec::new();
            assert!(v.try_reserve_exact(1 << 60).is_err());
        }
    });
    let allocated: u64 = memledger::sampling::sites()
        .scope("sampled_failed")
        .map(|s| s.allocated.bytes)
        .sum();
    assert_eq!(allocated, 0);
}

/// A handler running on an alternate signal stack samples its allocations without reading past
/// that stack: the direct walks see that the stack pointer is off the thread's stack and leave
/// the walk to the unwinder. (The signal is raised by the thread itself, between allocations,
/// so that the inner allocator is never interrupted.)
#[cfg(target_os = "linux")]
#[test]
fn allocations_on_an_alternate_signal_stack_are_sampled_safely() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static FREED: AtomicU64 = AtomicU64::new(0);

    extern "C" fn handler(_: libc::c_int) {
        let _g = memledger::scope!("sampled_signal");
        for _ in 0..64 {
            drop(black_box(vec![7u8; 8192]));
            FREED.fetch_add(1, Ordering::Relaxed);
        }
    }

    low_rate();
    let stack = vec![0u8; 256 * 1024];
    // SAFETY:
    // - the alternate stack lives until it is switched off below; the handler only allocates
    //   and frees, on the thread that raised the signal, between that thread's allocations.
    unsafe {
        let alt = libc::stack_t {
            ss_sp: stack.as_ptr() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: stack.len(),
        };
        let mut old: libc::stack_t = std::mem::zeroed();
        assert_eq!(libc::sigaltstack(&alt, &mut old), 0);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_ONSTACK;
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut()),
            0
        );
        for _ in 0..20 {
            assert_eq!(libc::raise(libc::SIGUSR2), 0);
        }
        let off = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        assert_eq!(libc::sigaltstack(&off, std::ptr::null_mut()), 0);
    }
    drop(stack);
    assert_eq!(FREED.load(Ordering::Relaxed), 20 * 64);
    let allocated: u64 = memledger::sampling::sites()
        .scope("sampled_signal")
        .map(|s| s.allocated.samples)
        .sum();
    // 1,280 blocks of 8 KiB at one sample per KiB: every one is sampled.
    assert!(allocated > 1_000, "{allocated} samples");
    assert_eq!(
        memledger::snapshot()
            .scope("sampled_signal")
            .unwrap()
            .live_bytes,
        0
    );
    assert_eq!(live_samples("sampled_signal"), 0);
}

/// Samples taken here, then the walk that took them and every other sample of this binary (see
/// `walk::assert_expected_walk`).
#[test]
fn samples_are_taken_by_the_expected_stack_walk() {
    low_rate();
    memledger::in_scope("sampled_walk", || {
        for _ in 0..64 {
            drop(black_box(vec![1u8; 8192]));
        }
    });
    assert!(memledger::sampling::sites()
        .scope("sampled_walk")
        .any(|s| s.allocated.samples > 0));
    walk::assert_expected_walk();
}
