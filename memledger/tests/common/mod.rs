//! The exactness suite, shared by one test binary per global-allocator setup.
//!
//! Every test compares the ledger with an independent reference: a mutex-guarded map of live
//! blocks kept by the test itself. Each test books to scopes under its own top-level name, so
//! tests running in parallel (and the harness's own allocations, which go to the unscoped root)
//! never touch the scopes a test checks.

#![allow(dead_code)]

#[path = "differential.rs"]
pub mod differential;

/// One scope's books, as the reference expects them and as the ledger has them.
pub use differential::{alloc_in, books_of as actual, Books as Expected};

use std::alloc::{alloc, dealloc, realloc, Layout};
use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};

/// The reference's live blocks (address → owner, size) and its books per scope.
type ReferenceState = (HashMap<usize, (usize, usize)>, Vec<Expected>);

/// A naive ledger: every live block with its owner and size.
pub struct Reference {
    scopes: Vec<String>,
    state: Mutex<ReferenceState>,
}

impl Reference {
    pub fn new(scopes: &[String]) -> Reference {
        Reference {
            scopes: scopes.to_vec(),
            state: Mutex::new((HashMap::new(), vec![Expected::default(); scopes.len()])),
        }
    }

    pub fn alloc(&self, ptr: *mut u8, scope: usize, size: usize) {
        let mut state = self.state.lock().unwrap();
        let previous = state.0.insert(ptr as usize, (scope, size));
        assert!(previous.is_none(), "block {ptr:p} handed out twice");
        let e = &mut state.1[scope];
        e.live += size as u64;
        e.allocs += 1;
        e.allocated += size as u64;
    }

    /// Call before the block is actually freed, so that its address cannot be reused first.
    pub fn free(&self, ptr: *mut u8) {
        let mut state = self.state.lock().unwrap();
        let (scope, size) = state.0.remove(&(ptr as usize)).expect("unknown block");
        let e = &mut state.1[scope];
        e.live -= size as u64;
        e.frees += 1;
        e.freed += size as u64;
    }

    /// Call `take` before the realloc and `put` after it.
    pub fn take(&self, ptr: *mut u8) -> (usize, usize) {
        let mut state = self.state.lock().unwrap();
        state.0.remove(&(ptr as usize)).expect("unknown block")
    }

    pub fn put_resized(&self, ptr: *mut u8, scope: usize, old: usize, new: usize) {
        let mut state = self.state.lock().unwrap();
        state.0.insert(ptr as usize, (scope, new));
        let e = &mut state.1[scope];
        e.reallocs += 1;
        if new >= old {
            e.live += (new - old) as u64;
            e.allocated += (new - old) as u64;
        } else {
            e.live -= (old - new) as u64;
            e.freed += (old - new) as u64;
        }
    }

    pub fn expected(&self) -> Vec<Expected> {
        self.state.lock().unwrap().1.clone()
    }

    /// Asserts that the ledger agrees with the reference on every scope, to the byte.
    pub fn check(&self, what: &str) {
        let expected = self.expected();
        let snap = memledger::snapshot();
        for (path, e) in self.scopes.iter().zip(&expected) {
            let got = snap.scope(path).map(actual).unwrap_or_default();
            assert_eq!(got, *e, "{what}: scope {path}");
            // At quiescence no scope reads below zero: a clamp would hide a booking bug.
            assert!(
                snap.clamped_scopes().all(|s| s.path != *path),
                "{what}: scope {path} read below zero"
            );
        }
    }
}

pub fn stats(path: &str) -> Expected {
    memledger::snapshot()
        .scope(path)
        .map(actual)
        .unwrap_or_default()
}

/// xorshift64*: deterministic, allocation-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn size(&mut self) -> usize {
        (match self.below(100) {
            0..=69 => 1 + self.below(128),
            70..=89 => 129 + self.below(4096 - 128),
            90..=98 => 4097 + self.below(70_000),
            _ => 70_001 + self.below(300_000),
        }) as usize
    }
    pub fn align(&mut self) -> usize {
        match self.below(20) {
            0..=13 => 1 << self.below(5),   // 1 ..= 16
            14..=17 => 32 << self.below(3), // 32 ..= 128
            18 => 4096,
            _ => 8192,
        }
    }
}

/// A raw block that may travel between threads.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub ptr: usize,
    pub layout: Layout,
}

/// Marks the first and last byte of a live block of `size` bytes.
fn fill(ptr: *mut u8, size: usize, byte: u8) {
    // SAFETY: the caller passes a live block of at least `size` bytes.
    unsafe {
        *ptr = byte;
        *ptr.add(size - 1) = byte;
    }
}

fn check_fill(ptr: *mut u8, size: usize, byte: u8) {
    // SAFETY: the caller passes a live block of at least `size` bytes.
    unsafe {
        assert_eq!(*ptr, byte, "first byte lost");
        assert_eq!(*ptr.add(size - 1), byte, "last byte lost");
    }
}

/// The suite's stress test: `threads` threads allocate, zero, resize and free blocks of random
/// sizes and alignments in random scopes, free blocks allocated by other threads in other scopes,
/// and the ledger must agree with the reference exactly.
pub fn reference_stress(prefix: &str, threads: usize, ops: usize) {
    let scopes: Vec<String> = ["a", "b", "a/x", "a/x/y", "c"]
        .iter()
        .map(|s| format!("{prefix}/{s}"))
        .collect();
    let reference = Arc::new(Reference::new(&scopes));
    let scopes = Arc::new(scopes);
    let barrier = Arc::new(Barrier::new(threads));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..threads).map(|_| mpsc::channel::<Block>()).unzip();
    let senders = Arc::new(senders);
    let handles: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(me, inbox)| {
            let (reference, scopes, barrier, senders) = (
                reference.clone(),
                scopes.clone(),
                barrier.clone(),
                senders.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new(me as u64 + 1);
                let mut mine: Vec<Block> = Vec::with_capacity(ops);
                let pick_scope = |rng: &mut Rng| rng.below(scopes.len() as u64) as usize;
                for _ in 0..ops {
                    while let Ok(block) = inbox.try_recv() {
                        mine.push(block);
                    }
                    let roll = rng.below(100);
                    if roll < 45 || mine.is_empty() {
                        let scope = pick_scope(&mut rng);
                        let layout = Layout::from_size_align(rng.size(), rng.align()).unwrap();
                        let zeroed = rng.below(4) == 0;
                        let ptr = alloc_in(&scopes[scope], layout, zeroed);
                        if zeroed {
                            // SAFETY: a live block of `layout.size()` bytes.
                            let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                            assert!(bytes.iter().all(|&b| b == 0), "alloc_zeroed not zeroed");
                        }
                        fill(ptr, layout.size(), me as u8);
                        reference.alloc(ptr, scope, layout.size());
                        mine.push(Block {
                            ptr: ptr as usize,
                            layout,
                        });
                        continue;
                    }
                    let index = rng.below(mine.len() as u64) as usize;
                    let block = mine.swap_remove(index);
                    let ptr = block.ptr as *mut u8;
                    match roll {
                        45..=64 => {
                            reference.free(ptr);
                            let elsewhere = pick_scope(&mut rng);
                            let _g = memledger::enter(&scopes[elsewhere]);
                            // SAFETY: `ptr` is a live block allocated with `block.layout`.
                            unsafe { dealloc(ptr, block.layout) };
                        }
                        65..=84 => {
                            let (owner, old) = reference.take(ptr);
                            let new = rng.size();
                            let byte = *scopes[owner].as_bytes().last().unwrap();
                            fill(ptr, old, byte);
                            let elsewhere = pick_scope(&mut rng);
                            let guard = memledger::enter(&scopes[elsewhere]);
                            // SAFETY: live block, its layout, and a non-zero new size.
                            let moved = unsafe { realloc(ptr, block.layout, new) };
                            drop(guard);
                            assert!(!moved.is_null());
                            assert_eq!(moved as usize % block.layout.align(), 0);
                            check_fill(moved, old.min(new).min(1), byte);
                            if new >= old {
                                check_fill(moved, old, byte);
                            }
                            reference.put_resized(moved, owner, old, new);
                            let layout =
                                Layout::from_size_align(new, block.layout.align()).unwrap();
                            mine.push(Block {
                                ptr: moved as usize,
                                layout,
                            });
                        }
                        _ => {
                            let to = rng.below(threads as u64) as usize;
                            senders[to].send(block).unwrap();
                        }
                    }
                }
                barrier.wait();
                // Every send happened before the barrier.
                while let Ok(block) = inbox.try_recv() {
                    mine.push(block);
                }
                // Free half of what is left here; hand the rest back to the main thread.
                let keep = mine.split_off(mine.len() / 2);
                for block in mine {
                    reference.free(block.ptr as *mut u8);
                    // SAFETY: live block with its layout.
                    unsafe { dealloc(block.ptr as *mut u8, block.layout) };
                }
                keep
            })
        })
        .collect();
    let kept: Vec<Block> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    reference.check("after the threads joined");
    let expected_total: u64 = reference.expected().iter().map(|e| e.live).sum();
    let snap = memledger::snapshot();
    assert_eq!(snap.subtree(prefix).unwrap().live_bytes, expected_total);
    assert!(expected_total > 0, "the test should leave blocks alive");
    for block in kept {
        reference.free(block.ptr as *mut u8);
        // SAFETY: live block with its layout.
        unsafe { dealloc(block.ptr as *mut u8, block.layout) };
    }
    reference.check("after every block was freed");
    assert_eq!(memledger::snapshot().subtree(prefix).unwrap().live_bytes, 0);
}

/// Nested scopes book to their paths; subtree totals add up; the current path is right.
pub fn nesting(prefix: &str) {
    let layout = Layout::from_size_align(1000, 8).unwrap();
    let outer_path = format!("{prefix}/outer");
    let inner_path = format!("{outer_path}/inner");
    let (a, b, c);
    {
        let _outer = memledger::enter(&outer_path);
        assert_eq!(memledger::current_scope(), outer_path);
        // SAFETY: non-zero size.
        a = std::hint::black_box(unsafe { alloc(layout) });
        {
            let _inner = memledger::scope!("inner");
            // `current_scope` allocates its answer in the crate's own scope.
            assert_eq!(memledger::current_scope(), inner_path);
            // SAFETY: non-zero size.
            b = std::hint::black_box(unsafe { alloc(layout) });
            let _deeper = memledger::enter("deeper/still");
            // SAFETY: non-zero size.
            c = std::hint::black_box(unsafe { alloc(layout) });
        }
        assert_eq!(memledger::current_scope(), outer_path);
    }
    let snap = memledger::snapshot();
    assert_eq!(snap.scope(&outer_path).unwrap().live_bytes, 1000);
    assert_eq!(
        snap.scope(&format!("{outer_path}/inner"))
            .unwrap()
            .live_bytes,
        1000
    );
    let deepest = format!("{outer_path}/inner/deeper/still");
    assert_eq!(snap.scope(&deepest).unwrap().live_bytes, 1000);
    assert_eq!(snap.scope(&deepest).unwrap().name, "still");
    assert_eq!(
        snap.parent(&deepest).unwrap().path,
        format!("{outer_path}/inner/deeper")
    );
    assert_eq!(
        snap.scope(&format!("{outer_path}/inner/deeper"))
            .unwrap()
            .live_bytes,
        0
    );
    let subtree = snap.subtree(&outer_path).unwrap();
    assert_eq!(subtree.live_bytes, 3000);
    assert_eq!(subtree.allocations, 3);
    assert_eq!(subtree.scopes, 4);
    let children: Vec<_> = snap.children(&outer_path).map(|s| s.name.clone()).collect();
    assert_eq!(children, ["inner"]);
    // Paths are normalised: leading, trailing and doubled slashes do not matter.
    assert_eq!(
        snap.scope(&format!("/{outer_path}//inner/")).unwrap().path,
        format!("{outer_path}/inner")
    );
    for ptr in [a, b, c] {
        // SAFETY: live blocks allocated with `layout`.
        unsafe { dealloc(ptr, layout) };
    }
    assert_eq!(
        memledger::snapshot()
            .subtree(&outer_path)
            .unwrap()
            .live_bytes,
        0
    );
}

/// The closure form returns its value and restores the scope; guards restore in any order.
pub fn closure_and_guard_order(prefix: &str) {
    let before = memledger::current_scope();
    let path = format!("{prefix}/closure");
    let v: Vec<u8> = memledger::in_scope(&path, || {
        assert_eq!(memledger::current_scope(), path);
        vec![7u8; 4321]
    });
    assert_eq!(memledger::current_scope(), before);
    let s = stats(&path);
    assert_eq!((s.live, s.allocs), (4321, 1));
    drop(v);
    assert_eq!(stats(&path).live, 0);

    let first = memledger::enter(&format!("{prefix}/first"));
    let second = memledger::enter("second");
    assert_eq!(memledger::current_scope(), format!("{prefix}/first/second"));
    drop(first); // out of order: ends `first` and `second` within it
    assert_eq!(memledger::current_scope(), before);
    drop(second); // already ended: changes nothing
    assert_eq!(memledger::current_scope(), before);

    // Struct fields drop in declaration order: outer first.
    struct Both {
        _outer: memledger::ScopeGuard,
        _inner: memledger::ScopeGuard,
    }
    let outer = memledger::enter(&format!("{prefix}/outer"));
    let both = Both {
        _outer: outer,
        _inner: memledger::enter("inner"),
    };
    drop(both);
    assert_eq!(memledger::current_scope(), before);

    // A guard ended by an outer one stays ended, even once newer guards sit at its depth.
    let g1 = memledger::enter(&format!("{prefix}/g1"));
    let g2 = memledger::enter("g2");
    drop(g1);
    let g3 = memledger::enter(&format!("{prefix}/g3"));
    let g4 = memledger::enter("g4");
    drop(g2);
    assert_eq!(memledger::current_scope(), format!("{prefix}/g3/g4"));
    drop(g4);
    assert_eq!(memledger::current_scope(), format!("{prefix}/g3"));
    drop(g3);
    assert_eq!(memledger::current_scope(), before);

    // Deeper than the tracked generations: still restored in order.
    let deep: Vec<memledger::ScopeGuard> = (0..40)
        .map(|i| memledger::enter(&format!("d{i}")))
        .collect();
    for guard in deep.into_iter().rev() {
        drop(guard);
    }
    assert_eq!(memledger::current_scope(), before);

    let _reset = memledger::enter("");
    assert_eq!(memledger::current_scope(), before);
}

/// Registering a scope allocates, but those allocations go to the crate's own scope; a block
/// freed on another thread, in another scope, is credited to its owner.
pub fn registration_and_cross_thread(prefix: &str) {
    let own_before = memledger::snapshot().own().allocations;
    let fresh = format!("{prefix}/fresh_scope_with_a_long_name_{}", "x".repeat(100));
    {
        let _g = memledger::enter(&fresh);
    }
    assert_eq!(stats(&fresh), Expected::default());
    assert!(memledger::snapshot().own().allocations > own_before);

    let owner = format!("{prefix}/owner");
    let layout = Layout::from_size_align(3000, 64).unwrap();
    let block = alloc_in(&owner, layout, false) as usize;
    let other = format!("{prefix}/other");
    std::thread::spawn(move || {
        let _g = memledger::enter(&other);
        // SAFETY: live block with its layout.
        unsafe { dealloc(block as *mut u8, layout) };
    })
    .join()
    .unwrap();
    let s = stats(&owner);
    assert_eq!((s.live, s.allocs, s.frees), (0, 1, 1));
    assert_eq!(stats(&format!("{prefix}/other")), Expected::default());
}

/// A scope booked by one thread: its peak is never above the true high-water mark and at most one
/// grant (64 KiB) below it; in exact mode it is exact, below and above the publish threshold.
pub fn peak_single_thread(prefix: &str) {
    for exact in [false, true] {
        let path = format!("{prefix}/peak_{exact}");
        memledger::ScopeHandle::at(&path).set_exact(exact);
        let mut rng = Rng::new(99);
        let mut live: Vec<(*mut u8, Layout)> = Vec::new();
        let (mut current, mut highest) = (0u64, 0u64);
        let check = |s: &memledger::ScopeStats, current: u64, highest: u64, when: &str| {
            assert_eq!(s.live_bytes, current, "{when}");
            if exact {
                assert_eq!(s.peak_bytes, highest, "{when}");
            } else {
                assert!(
                    s.peak_bytes <= highest
                        && s.peak_bytes + memledger::Snapshot::PEAK_RESOLUTION_ONE_THREAD > highest,
                    "{when}: peak {} vs true {highest}",
                    s.peak_bytes
                );
            }
        };
        for step in 0..4000 {
            let grow = rng.below(100) < if step < 2000 { 60 } else { 35 };
            if grow || live.is_empty() {
                let layout = Layout::from_size_align(rng.size(), 8).unwrap();
                live.push((alloc_in(&path, layout, false), layout));
                current += layout.size() as u64;
                highest = highest.max(current);
            } else {
                let (ptr, layout) = live.swap_remove(rng.below(live.len() as u64) as usize);
                // SAFETY: live block with its layout.
                unsafe { dealloc(ptr, layout) };
                current -= layout.size() as u64;
            }
            if step % 500 == 0 {
                let snap = memledger::snapshot();
                check(
                    snap.scope(&path).unwrap(),
                    current,
                    highest,
                    &format!("step {step}"),
                );
            }
        }
        for (ptr, layout) in live {
            // SAFETY: live block with its layout.
            unsafe { dealloc(ptr, layout) };
        }
        let snap = memledger::snapshot();
        check(snap.scope(&path).unwrap(), 0, highest, "at the end");

        // A small scope that never reaches the publish threshold.
        let small = format!("{prefix}/peak_small_{exact}");
        memledger::ScopeHandle::at(&small).set_exact(exact);
        let layout = Layout::from_size_align(100, 1).unwrap();
        let blocks: Vec<_> = (0..50).map(|_| alloc_in(&small, layout, false)).collect();
        for ptr in blocks {
            // SAFETY: live block with its layout.
            unsafe { dealloc(ptr, layout) };
        }
        let snap = memledger::snapshot();
        check(snap.scope(&small).unwrap(), 0, 5000, "small scope");
    }
}

/// With `k` threads booking to one scope, the peak is within the documented bound.
pub fn peak_many_threads(prefix: &str) {
    const THREADS: u64 = 8;
    const EACH: u64 = 300 * 1024;
    let path = Arc::new(format!("{prefix}/peak_many"));
    let held = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (path, held) = (path.clone(), held.clone());
            std::thread::spawn(move || {
                let layout = Layout::from_size_align(1024, 8).unwrap();
                let blocks: Vec<_> = (0..EACH / 1024)
                    .map(|_| alloc_in(&path, layout, false))
                    .collect();
                held.wait();
                for ptr in blocks {
                    // SAFETY: live block with its layout.
                    unsafe { dealloc(ptr, layout) };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let snap = memledger::snapshot();
    let s = snap.scope(&path).unwrap();
    let truth = THREADS * EACH;
    let unit = memledger::Snapshot::PEAK_RESOLUTION_PER_THREAD;
    assert_eq!(s.live_bytes, 0);
    assert!(
        s.peak_bytes + THREADS * unit >= truth && s.peak_bytes <= truth + (THREADS - 1) * unit,
        "peak {} vs true {truth}",
        s.peak_bytes
    );
}

/// Idle live threads hold back unpublished bytes; the peak stays within the documented bound for
/// `k` live threads that booked to the scope, in both directions.
pub fn peak_with_idle_threads(prefix: &str) {
    const WORKERS: usize = 20;
    const BLOCK: usize = 60 * 1024;
    let unit = memledger::Snapshot::PEAK_RESOLUTION_PER_THREAD;
    let layout = Layout::from_size_align(BLOCK, 8).unwrap();
    let k = WORKERS as u64 + 1;

    // Producer/consumer: this thread allocates, parked workers free, one block at a time.
    let produced = format!("{prefix}/produced");
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut workers = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..WORKERS {
        let (tx, rx) = mpsc::channel::<Option<Block>>();
        let done = done_tx.clone();
        workers.push(std::thread::spawn(move || {
            while let Some(block) = rx.recv().unwrap() {
                // SAFETY: live block with its layout.
                unsafe { dealloc(block.ptr as *mut u8, block.layout) };
                done.send(()).unwrap();
            }
        }));
        inboxes.push(tx);
    }
    for inbox in &inboxes {
        let ptr = alloc_in(&produced, layout, false) as usize;
        inbox.send(Some(Block { ptr, layout })).unwrap();
        done_rx.recv().unwrap();
    }
    let truth = BLOCK as u64;
    let s = memledger::snapshot().scope(&produced).unwrap().clone();
    assert_eq!(s.live_bytes, 0);
    assert!(
        s.peak_bytes >= truth && s.peak_bytes <= truth + (k - 1) * unit,
        "{s:?}"
    );

    for inbox in inboxes {
        inbox.send(None).unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }

    // One after another, threads each allocate a block and keep it while parked: none reaches
    // the publish threshold, so only the bound (and `live_bytes` while they hold) speaks for them.
    let held = Arc::new(format!("{prefix}/held"));
    let release = Arc::new(Barrier::new(WORKERS + 1));
    let mut holders = Vec::new();
    for _ in 0..WORKERS {
        let (held, release) = (held.clone(), release.clone());
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        holders.push(std::thread::spawn(move || {
            let ptr = alloc_in(&held, layout, false);
            ready_tx.send(()).unwrap();
            release.wait();
            // SAFETY: live block with its layout.
            unsafe { dealloc(ptr, layout) };
        }));
        ready_rx.recv().unwrap();
    }
    let truth = (WORKERS * BLOCK) as u64;
    let s = memledger::snapshot().scope(&held).unwrap().clone();
    assert_eq!(s.live_bytes, truth);
    assert!(s.peak_bytes >= truth, "{s:?}");
    release.wait();
    for h in holders {
        h.join().unwrap();
    }
    let k = WORKERS as u64;
    let s = memledger::snapshot().scope(&held).unwrap().clone();
    assert_eq!(s.live_bytes, 0);
    assert!(
        s.peak_bytes + k * unit >= truth && s.peak_bytes <= truth + (k - 1) * unit,
        "{s:?}"
    );
}

/// Blocks allocated and freed in thread-local destructors, and scopes registered there, are
/// booked exactly.
///
/// On Linux the ledger gives a thread's counters back from a pthread key's destructor, which
/// glibc runs after every `thread_local!` destructor, so both destructors here still book through
/// the thread's own counters; [`after_release`] checks the bookings made once they are given back
/// (`.ci/mutants slabless_booking_lost` fails it, not this test).
pub fn thread_local_teardown(prefix: &'static str) {
    use std::cell::Cell;

    struct AtExit {
        prefix: Cell<&'static str>,
        label: &'static str,
        early: Cell<Option<Block>>,
    }
    static LATE_BLOCKS: Mutex<Vec<Block>> = Mutex::new(Vec::new());

    impl Drop for AtExit {
        fn drop(&mut self) {
            let prefix = self.prefix.get();
            if let Some(block) = self.early.take() {
                let _g = memledger::enter(&format!("{prefix}/elsewhere"));
                // SAFETY: live block with its layout.
                unsafe { dealloc(block.ptr as *mut u8, block.layout) };
            }
            let layout = Layout::from_size_align(777, 16).unwrap();
            let late = format!("{prefix}/{}_late", self.label);
            let ptr = alloc_in(&late, layout, true);
            let block = Block {
                ptr: ptr as usize,
                layout,
            };
            LATE_BLOCKS.lock().unwrap().push(block);
        }
    }
    std::thread_local! {
        static FIRST: AtExit = const {
            AtExit { prefix: Cell::new(""), label: "first", early: Cell::new(None) }
        };
        static SECOND: AtExit = const {
            AtExit { prefix: Cell::new(""), label: "second", early: Cell::new(None) }
        };
    }

    const THREADS: usize = 8;
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let layout = Layout::from_size_align(500, 8).unwrap();
                // Registered before this thread's first allocation: where the ledger gives the
                // counters back from a `thread_local!` of its own (Apple's platforms), this one is
                // destroyed after it.
                FIRST.with(|f| f.prefix.set(prefix));
                let early = alloc_in(&format!("{prefix}/first_early"), layout, false);
                FIRST.with(|f| {
                    f.early.set(Some(Block {
                        ptr: early as usize,
                        layout,
                    }))
                });
                let early = alloc_in(&format!("{prefix}/second_early"), layout, false);
                SECOND.with(|s| {
                    s.prefix.set(prefix);
                    s.early.set(Some(Block {
                        ptr: early as usize,
                        layout,
                    }))
                });
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let n = THREADS as u64;
    for label in ["first", "second"] {
        let early = stats(&format!("{prefix}/{label}_early"));
        assert_eq!(
            (early.live, early.allocs, early.frees),
            (0, n, n),
            "{label}"
        );
        let late = stats(&format!("{prefix}/{label}_late"));
        assert_eq!(
            (late.live, late.allocs, late.frees),
            (777 * n, n, 0),
            "{label}"
        );
    }
    assert_eq!(stats(&format!("{prefix}/elsewhere")), Expected::default());
    let blocks = std::mem::take(&mut *LATE_BLOCKS.lock().unwrap());
    for block in blocks {
        // SAFETY: live block with its layout.
        unsafe { dealloc(block.ptr as *mut u8, block.layout) };
    }
    for label in ["first", "second"] {
        assert_eq!(stats(&format!("{prefix}/{label}_late")).live, 0);
    }
}

/// After a thread's counters were given back (as at thread-local teardown), its allocations,
/// frees and resizes, in old and new scopes, are still booked exactly, peaks included.
pub fn after_release(prefix: &str) {
    let before = format!("{prefix}/before");
    let after = format!("{prefix}/after");
    let scopes = [before.clone(), after.clone()];
    let reference = Arc::new(Reference::new(&scopes));
    let kept = {
        let reference = reference.clone();
        std::thread::spawn(move || {
            let layout = Layout::from_size_align(200_000, 32).unwrap();
            let small = Layout::from_size_align(40, 8).unwrap();
            let a = alloc_in(&scopes[0], layout, false);
            reference.alloc(a, 0, layout.size());
            let b = alloc_in(&scopes[0], small, false);
            reference.alloc(b, 0, small.size());
            memledger::__private::release_thread_slab();
            // Booked through the shared atomics from here on.
            reference.free(a);
            // SAFETY: live block with its layout.
            unsafe { dealloc(a, layout) };
            let c = alloc_in(&scopes[1], layout, true);
            reference.alloc(c, 1, layout.size());
            let (owner, old) = reference.take(b);
            // SAFETY: live block, its layout, non-zero size.
            let b2 = unsafe { realloc(b, small, 90_000) };
            assert!(!b2.is_null());
            reference.put_resized(b2, owner, old, 90_000);
            vec![
                Block {
                    ptr: c as usize,
                    layout,
                },
                Block {
                    ptr: b2 as usize,
                    layout: Layout::from_size_align(90_000, 8).unwrap(),
                },
            ]
        })
        .join()
        .unwrap()
    };
    reference.check("after the thread gave its counters back");
    let snap = memledger::snapshot();
    assert_eq!(snap.scope(&before).unwrap().peak_bytes, 200_040);
    assert_eq!(snap.scope(&after).unwrap().peak_bytes, 200_000);
    for block in kept {
        reference.free(block.ptr as *mut u8);
        // SAFETY: live block with its layout.
        unsafe { dealloc(block.ptr as *mut u8, block.layout) };
    }
    reference.check("after the main thread freed the rest");
}

/// Layouts too large once the tag is added fail with null, as any too-large request does: no
/// panic, nothing booked, and a failed resize leaves the block and its owner intact.
pub fn huge_layouts_fail_cleanly(prefix: &str) {
    let path = format!("{prefix}/huge");
    let huge = Layout::from_size_align(isize::MAX as usize - 1, 1).unwrap();
    let ptr = {
        let _g = memledger::enter(&path);
        // SAFETY: non-zero size.
        std::hint::black_box(unsafe { alloc(std::hint::black_box(huge)) })
    };
    assert!(ptr.is_null());
    let layout = Layout::from_size_align(64, 8).unwrap();
    let block = alloc_in(&path, layout, false);
    fill(block, 64, 0xAB);
    // SAFETY: live block, its layout, non-zero size.
    let moved = std::hint::black_box(unsafe {
        realloc(block, layout, std::hint::black_box(isize::MAX as usize - 4))
    });
    assert!(moved.is_null());
    check_fill(block, 64, 0xAB);
    let s = stats(&path);
    assert_eq!((s.live, s.allocs, s.reallocs), (64, 1, 0));
    // SAFETY: the failed realloc left the block live with its layout.
    unsafe { dealloc(block, layout) };
    assert_eq!(stats(&path).live, 0);
}

/// Generates one `#[test]` per suite function, each under its own top-level scope, each first
/// running the optional `$setup` block.
#[macro_export]
macro_rules! exactness_suite {
    ($prefix:literal) => {
        exactness_suite!($prefix, {});
    };
    // `$setup` runs first in every test (a sampling rate, say).
    ($prefix:literal, $setup:block) => {
        #[test]
        fn reference_stress() {
            $setup
            // Under Miri, which interprets every instruction and checks every access, a shorter
            // run that still has every thread allocate, resize, free and hand blocks over.
            let (threads, ops) = if cfg!(miri) { (4, 150) } else { (8, 20_000) };
            common::reference_stress(concat!($prefix, "_stress"), threads, ops);
        }
        #[test]
        fn nesting() {
            $setup
            common::nesting(concat!($prefix, "_nesting"));
        }
        #[test]
        fn closure_and_guard_order() {
            $setup
            common::closure_and_guard_order(concat!($prefix, "_closure"));
        }
        #[test]
        fn registration_and_cross_thread() {
            $setup
            common::registration_and_cross_thread(concat!($prefix, "_registration"));
        }
        #[test]
        fn peak_single_thread() {
            $setup
            common::peak_single_thread(concat!($prefix, "_peak1"));
        }
        #[test]
        fn peak_many_threads() {
            $setup
            common::peak_many_threads(concat!($prefix, "_peak8"));
        }
        #[test]
        fn huge_layouts_fail_cleanly() {
            $setup
            common::huge_layouts_fail_cleanly(concat!($prefix, "_huge"));
        }
        #[test]
        fn display_keeps_the_tree() {
            $setup
            common::display_keeps_the_tree(concat!($prefix, "_display"));
        }
        #[test]
        fn after_release() {
            $setup
            common::after_release(concat!($prefix, "_released"));
        }
        #[test]
        fn peak_with_idle_threads() {
            $setup
            common::peak_with_idle_threads(concat!($prefix, "_idle"));
        }
        #[test]
        fn thread_local_teardown() {
            $setup
            common::thread_local_teardown(concat!($prefix, "_tls"));
        }
    };
}

/// The table shows a scope without blocks of its own when a descendant has some, so that every
/// row sits under its real parent.
pub fn display_keeps_the_tree(prefix: &str) {
    let layout = Layout::from_size_align(10, 1).unwrap();
    let ptr = alloc_in(
        &format!("{prefix}/parent_without_blocks/child"),
        layout,
        false,
    );
    let table = memledger::snapshot().to_string();
    let parent_row = table
        .lines()
        .position(|l| l.trim_start().starts_with("parent_without_blocks"))
        .expect("the parent has a row");
    assert!(table
        .lines()
        .nth(parent_row + 1)
        .unwrap()
        .trim_start()
        .starts_with("child"));
    // SAFETY: live block with its layout.
    unsafe { dealloc(ptr, layout) };
}
