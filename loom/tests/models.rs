//! Model checks of the lock-free protocols, over loom's atomics: every interleaving (and every
//! value a relaxed or acquire load may return) of a few threads is explored.
//!
//! The crates' own source files are compiled here, unchanged, with `crate::sys::atomic` (the
//! facade's own shim, `memledger/src/sys/atomic.rs`) taking its loom arm under `cfg(memledger_loom)`,
//! which `loom/build.rs` sets:
//!
//! - `memledger/src/books/cells.rs`: the per-thread counter cells, their budgets and refills,
//!   publishing and peaks, mode changes and enforced reservations;
//! - `memledger/src/books/slab.rs`: a thread's slab of cells and the list of every slab, with no
//!   per-thread parts beside the cells (`Slab<()>`);
//! - `memledger/src/books/callsite.rs`: the packed cache of a `scope!` call site;
//! - `memledger-monitor/src/sampler/handoff.rs`: the sampler's drop-oldest hand-off to a
//!   subscriber's queue;
//! - `memledger/src/owner/arena/transfer.rs`: the transfer caches that hand batches of freed
//!   blocks from one thread to another.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --manifest-path loom/Cargo.toml`.
#![cfg(loom)]
#![allow(dead_code)]

use std::collections::VecDeque;

use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

// Not every atomic the facade imports through it is used by the files compiled here.
#[allow(unused_imports)]
#[path = "../../memledger/src/sys/atomic.rs"]
mod atomic;

/// The scope ids `cells.rs` reads: a table of four counters in one page, so that giving a slab
/// back (which flushes every counter) stays within what loom can explore.
mod id {
    pub(crate) type ScopeId = u16;
    pub(crate) const MAX_SCOPES: usize = 4;
}

#[path = "../../memledger/src/books/cells.rs"]
mod cells;

#[path = "../../memledger/src/books/slab.rs"]
mod slab;

#[path = "../../memledger/src/books/callsite.rs"]
mod callsite;

#[path = "../../memledger-monitor/src/sampler/handoff.rs"]
mod handoff;

#[path = "../../memledger/src/owner/arena/transfer.rs"]
mod transfer;

/// The paths the files above import, as the facade lays them out.
mod sys {
    pub(crate) use super::atomic;
}
#[allow(unused_imports)]
mod books {
    pub(crate) use super::{callsite, cells, id};
}

use atomic::Ordering;
use cells::{Counter, Op, ScopeSlot, Totals, GRANT, PUBLISH_THRESHOLD};
use slab::{Slab, SlabList};

/// A block size past the grant: every booking of it takes the cold path and publishes.
const BIG: u64 = GRANT + 1;

/// Explores `f` with up to three preemptions per execution.
fn model(f: impl Fn() + Sync + Send + 'static) {
    model_bounded(3, f);
}

/// Explores `f` with up to `preemptions` preemptions per execution (loom's bound: beyond a few,
/// the number of executions explodes and new bugs are rare).
fn model_bounded(preemptions: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(preemptions);
    builder.check(f);
}

/// A reader's sum of one scope: its slot, then the given cells.
fn read(slot: &ScopeSlot, cells: &[&Counter]) -> Totals {
    let mut total = slot.totals();
    for cell in cells {
        cell.add_to(&mut total);
    }
    total
}

/// One slot, as a one-entry table for the cells.
fn table(slot: &ScopeSlot) -> &[ScopeSlot] {
    std::slice::from_ref(slot)
}

/// Books `op` through the ledger's own dispatch (`cells::book`: `Counter::try_book` on the hot
/// path), whose cold path books with `Counter::refill`, as the ledger's `book_cold` does.
fn book(cell: &Counter, slot: &ScopeSlot, op: Op) {
    cells::book(cell, op, |op| cell.refill(table(slot), 0, op));
}

/// A reader that runs while a thread books, on the hot and the cold path, never sees more bytes
/// taken out than brought in, nor counts that go backwards; after the join it sees the exact
/// books.
///
/// loom remembers only the last access to each atomic, so a relaxed load followed by a store of
/// the same cell in one thread (how a cell is bumped) hides the conflict with a reader's earlier
/// load, and the reader would never be scheduled after the writer's bumps. The writer therefore
/// also bumps `progress` (a read-modify-write) after each operation, and the reader loads it
/// relaxed before each reading: that gives loom the scheduling points without adding any
/// synchronisation between the two.
#[test]
fn a_reader_never_sees_torn_cells() {
    model(|| {
        let slot = Arc::new(ScopeSlot::new());
        let cell = Arc::new(Counter::default());
        let progress = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (slot, cell, progress) = (slot.clone(), cell.clone(), progress.clone());
            thread::spawn(move || {
                // The first takes the cold path (an empty cell has no budget), the others the
                // hot path.
                for op in [Op::Alloc(100), Op::Realloc(-40), Op::Dealloc(60)] {
                    book(&cell, &slot, op);
                    progress.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let mut previous = Totals::default();
        for _ in 0..2 {
            progress.load(Ordering::Relaxed);
            let t = read(&slot, &[&cell]);
            assert!(t.bytes_out <= t.bytes_in, "{t:?}");
            assert!(t.bytes_in <= 100, "{t:?}");
            assert!(t.allocs >= previous.allocs && t.bytes_in >= previous.bytes_in);
            previous = t;
        }
        writer.join().unwrap();
        let last = read(&slot, &[&cell]);
        assert_eq!(
            (
                last.allocs,
                last.reallocs,
                last.frees,
                last.bytes_in,
                last.bytes_out
            ),
            (1, 1, 1, 100, 100)
        );
        // Below the publish threshold: nothing written to the shared total.
        assert_eq!(slot.published(), 0);
        assert_eq!(last.peak, 100);
    });
}

/// Two threads book to one scope, one freeing the other's block (handed over as a real pointer
/// would be, with release/acquire). Every booking publishes. After both flush, the published
/// total is exact, and the peak lies between the final total and the most that was ever live.
#[test]
fn publishes_and_peaks_across_threads() {
    model(|| {
        let slot = Arc::new(ScopeSlot::new());
        let a = Arc::new(Counter::default());
        let b = Arc::new(Counter::default());
        let handed = Arc::new(AtomicBool::new(false));
        let freer = {
            let (slot, b, handed) = (slot.clone(), b.clone(), handed.clone());
            thread::spawn(move || {
                while !handed.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                book(&b, &slot, Op::Dealloc(BIG));
                b.flush(table(&slot), 0);
            })
        };
        book(&a, &slot, Op::Alloc(BIG));
        handed.store(true, Ordering::Release);
        book(&a, &slot, Op::Alloc(BIG));
        a.flush(table(&slot), 0);
        freer.join().unwrap();
        assert_eq!(slot.published(), BIG as i64);
        let total = read(&slot, &[&a, &b]);
        assert_eq!((total.bytes_in, total.bytes_out), (2 * BIG, BIG));
        // At most both blocks were live at once; at least one is live now.
        assert!(
            (BIG as i64..=2 * BIG as i64).contains(&total.peak),
            "peak {}",
            total.peak
        );
    });
}

/// A thread books on its budget while another puts the scope in exact mode and back: whichever
/// refill sees the mode, the books stay exact, the unpublished bytes stay within the threshold
/// plus one grant, and once the owner has seen exact mode (its cell spent, as `set_exact` does on
/// the calling thread) its next operation is published at once.
#[test]
fn budgets_stay_exact_across_a_mode_change() {
    model(|| {
        let slot = Arc::new(ScopeSlot::new());
        let cell = Arc::new(Counter::default());
        let switcher = {
            let slot = slot.clone();
            thread::spawn(move || {
                slot.set_exact(true);
                // Whatever the owner published so far: some prefix of its bookings.
                let seen = slot.published();
                let small = PUBLISH_THRESHOLD as i64 / 4;
                assert!([0, 10, 10 + small, 30].contains(&seen), "published {seen}");
            })
        };
        let small = PUBLISH_THRESHOLD as u64 / 4;
        book(&cell, &slot, Op::Alloc(10));
        book(&cell, &slot, Op::Alloc(small));
        book(&cell, &slot, Op::Dealloc(small - 20));
        switcher.join().unwrap();
        // What the owner holds back is bounded.
        let pending = 30 - slot.published();
        assert!(pending.unsigned_abs() < PUBLISH_THRESHOLD as u64 + GRANT);
        // The owner now knows the scope is strict (`set_exact` spends the caller's budget; here
        // the join told it): its next booking publishes everything.
        cell.spend();
        book(&cell, &slot, Op::Alloc(5));
        assert_eq!(slot.published(), 35);
        let t = read(&slot, &[&cell]);
        assert_eq!(
            (t.allocs, t.frees, t.bytes_in, t.bytes_out),
            (3, 1, 15 + small, small - 20)
        );
        assert!(
            t.peak >= 35 && t.peak <= 10 + small as i64,
            "peak {}",
            t.peak
        );
    });
}

/// Two threads reserve against one limit: together they never pass it, a refused request never
/// shows in the total, and a third thread's reading never exceeds the limit.
#[test]
fn reservations_never_pass_the_limit() {
    model(|| {
        let slot = Arc::new(ScopeSlot::new());
        slot.set_limit(Some(150));
        let threads: Vec<_> = [100u64, 80]
            .into_iter()
            .map(|bytes| {
                let slot = slot.clone();
                thread::spawn(move || match slot.reserve(bytes) {
                    Ok(total) => {
                        assert!(total <= 150);
                        slot.book_reserved(bytes, false, total);
                        bytes
                    }
                    Err(_) => 0,
                })
            })
            .collect();
        let seen = slot.published();
        assert!((0..=150).contains(&seen), "{seen}");
        let granted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        // Exactly one of the two fits.
        assert!(granted == 100 || granted == 80, "granted {granted}");
        assert_eq!(slot.published(), granted as i64);
        assert_eq!(slot.refused(), 1);
        assert!(slot.totals().peak <= 150);
    });
}

/// A cell books a reserved allocation in a limited scope while another thread reserves: what
/// the cell held back before is published with it, and the total is exact after both.
#[test]
fn a_reserved_booking_publishes_what_the_cell_held_back() {
    model(|| {
        let slot = Arc::new(ScopeSlot::new());
        let cell = Arc::new(Counter::default());
        // Booked before the limit: 10 bytes held back by the cell.
        book(&cell, &slot, Op::Alloc(10));
        slot.set_limit(Some(1000));
        cell.spend();
        let other = {
            let slot = slot.clone();
            thread::spawn(move || {
                let total = slot.reserve(300).unwrap();
                slot.book_reserved(300, false, total);
            })
        };
        let total = slot.reserve(200).unwrap();
        cell.book_reserved(table(&slot), 0, Op::Alloc(200), 200, total);
        other.join().unwrap();
        assert_eq!(slot.published(), 510);
        let t = read(&slot, &[&cell]);
        assert_eq!((t.allocs, t.bytes_in), (3, 510));
        assert!(t.peak <= 510, "peak {}", t.peak);
    });
}

/// Threads take a free slab or push a new one, book into it and give it back, while a reader
/// walks the list. The list starts with one free slab (a thread that exited), so that both
/// threads may race to claim it. No slab is ever held by two threads (their single-writer updates
/// would lose bookings), and the final sum over the list is exact.
#[test]
fn slabs_change_hands_without_losing_bookings() {
    // Three threads and a walk of the list: two preemptions keep it to seconds (three take
    // minutes).
    model_bounded(2, || {
        let slots: &'static [ScopeSlot] = Box::leak(Box::new([ScopeSlot::new()]));
        let list: &'static SlabList<()> = Box::leak(Box::new(SlabList::new()));
        // SAFETY:
        // - a fresh, empty slab, leaked: never freed or moved.
        unsafe { list.push(Box::into_raw(Slab::<()>::boxed())) }.release(slots);
        // Scheduling points for the reader, as in `a_reader_never_sees_torn_cells`.
        let progress: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let worker = move || {
            let slab = list.take_free().unwrap_or_else(|| {
                let raw = Box::into_raw(Slab::<()>::boxed());
                // SAFETY:
                // - a fresh, empty slab, leaked: never freed or moved.
                unsafe { list.push(raw) }
            });
            slab.touch(0);
            book(slab.cell(0), &slots[0], Op::Alloc(10));
            progress.fetch_add(1, Ordering::Relaxed);
            slab.release(slots);
        };
        let threads: Vec<_> = (0..2).map(|_| thread::spawn(worker)).collect();
        progress.load(Ordering::Relaxed);
        let mut during = Totals::default();
        list.for_each(|slab| slab.for_each_cell(1, |_, c| c.add_to(&mut during)));
        assert!(during.allocs <= 2 && during.bytes_in <= 20);
        for t in threads {
            t.join().unwrap();
        }
        let mut slabs = 0;
        let mut after = slots[0].totals();
        list.for_each(|slab| {
            slabs += 1;
            assert!(!slab.in_use());
            slab.for_each_cell(1, |_, c| c.add_to(&mut after));
        });
        assert!((1..=2).contains(&slabs));
        assert_eq!((after.allocs, after.bytes_in), (2, 20));
        assert_eq!(slots[0].published(), 20);
    });
}

/// A bounded queue for the hand-off model: a mutex around a deque, as a channel behaves.
struct ModelQueue {
    items: Mutex<VecDeque<u32>>,
    capacity: usize,
}

impl handoff::Queue for ModelQueue {
    type Item = u32;

    fn try_push(&self, item: u32) -> Result<(), handoff::Rejected<u32>> {
        let mut items = self.items.lock().unwrap();
        if items.len() == self.capacity {
            return Err(handoff::Rejected::Full(item));
        }
        items.push_back(item);
        Ok(())
    }

    fn drop_oldest(&self) -> bool {
        self.items.lock().unwrap().pop_front().is_some()
    }
}

/// The sampler sends three events into a queue of one while the reader takes events: every event
/// is either read or counted as dropped, exactly once; the reader sees them in order; the newest
/// is never dropped; the sender never waits.
#[test]
fn the_hand_off_loses_nothing_uncounted() {
    model(|| {
        let queue = Arc::new(ModelQueue {
            items: Mutex::new(VecDeque::new()),
            capacity: 1,
        });
        let sender = {
            let queue = queue.clone();
            thread::spawn(move || {
                (1..=3)
                    .map(|event| handoff::send_dropping_oldest(&*queue, event).unwrap())
                    .sum::<u64>()
            })
        };
        let mut read = Vec::new();
        for _ in 0..2 {
            if let Some(event) = queue.items.lock().unwrap().pop_front() {
                read.push(event);
            }
        }
        let dropped = sender.join().unwrap();
        read.extend(queue.items.lock().unwrap().drain(..));
        assert_eq!(
            read.len() as u64 + dropped,
            3,
            "read {read:?}, dropped {dropped}"
        );
        assert!(read.windows(2).all(|w| w[0] < w[1]), "{read:?}");
        assert_eq!(read.last(), Some(&3));
    });
}

/// Two threads fill one call-site cache with different parents: a lookup only ever returns the
/// child cached for its own parent, never one thread's parent with the other's child.
#[test]
fn a_call_site_cache_never_mixes_entries() {
    model(|| {
        let cache = Arc::new(AtomicU32::new(0));
        let other = {
            let cache = cache.clone();
            thread::spawn(move || {
                callsite::store(&cache, 7, 300, false);
                callsite::lookup(&cache, 7)
            })
        };
        callsite::store(&cache, 9, 5000, true);
        let mine = callsite::lookup(&cache, 9);
        let theirs = other.join().unwrap();
        assert!(mine.is_none() || mine == Some((5000, true)), "{mine:?}");
        assert!(
            theirs.is_none() || theirs == Some((300, false)),
            "{theirs:?}"
        );
        assert!(mine.is_some() || theirs.is_some());
    });
}

/// A freed block of the transfer model: its first word links the next block of its batch, written
/// and read as a plain (non-atomic) location, so that loom reports a read the giver's write does
/// not happen before.
struct ModelBlock {
    link: loom::cell::UnsafeCell<usize>,
}

/// Links `blocks` into a batch, as a front cache's stack is: each block's link names the next,
/// the last's is null. Returns the batch's first block as the cache sees it.
fn link_batch(blocks: &[ModelBlock]) -> *mut u8 {
    for (i, block) in blocks.iter().enumerate() {
        let next = blocks
            .get(i + 1)
            .map_or(0, |b| b as *const ModelBlock as usize);
        block.link.with_mut(|link| unsafe { *link = next });
    }
    &blocks[0] as *const ModelBlock as *mut u8
}

/// Walks a taken batch from `first`, reading each link as the taker does; the blocks' indexes in
/// `all`.
fn walk_batch(all: &[ModelBlock], first: *mut u8) -> Vec<usize> {
    let mut seen = Vec::new();
    let mut block = first as usize;
    while block != 0 {
        let index = all
            .iter()
            .position(|b| b as *const ModelBlock as usize == block)
            .expect("a link names a block of the model");
        seen.push(index);
        block = all[index].link.with(|link| unsafe { *link });
    }
    seen
}

/// Two threads hand a batch each to one transfer cache while a third takes: every batch comes
/// out exactly once and whole, its links as its giver wrote them, and none is lost to a racing
/// hand-over.
#[test]
fn batches_cross_threads_whole() {
    model(|| {
        let blocks: Arc<Vec<ModelBlock>> = Arc::new(
            (0..4)
                .map(|_| ModelBlock {
                    link: loom::cell::UnsafeCell::new(0),
                })
                .collect(),
        );
        let cache = Arc::new(transfer::Transfer::new());
        let givers: Vec<_> = [0..2, 2..4]
            .into_iter()
            .map(|range| {
                let (blocks, cache) = (blocks.clone(), cache.clone());
                thread::spawn(move || {
                    let first = link_batch(&blocks[range]);
                    assert!(
                        cache.give(first),
                        "a cache of {} slots refused",
                        transfer::SLOTS
                    );
                })
            })
            .collect();
        let mut taken = Vec::new();
        // Lets the givers run before the first take: without it, loom's bounded exploration never
        // reaches a take that finds a batch before the givers are joined.
        thread::yield_now();
        let first = cache.take();
        if !first.is_null() {
            taken.push(walk_batch(&blocks, first));
        }
        for giver in givers {
            giver.join().unwrap();
        }
        loop {
            let first = cache.take();
            if first.is_null() {
                break;
            }
            taken.push(walk_batch(&blocks, first));
        }
        taken.sort();
        assert_eq!(taken, vec![vec![0, 1], vec![2, 3]], "batches taken");
    });
}
