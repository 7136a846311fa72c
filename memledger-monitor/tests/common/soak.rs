//! The soak test's body, run by one test binary per global allocator (`tests/soak.rs`,
//! `tests/soak_arenas.rs`).

use std::alloc::{dealloc, realloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::common::{alloc_in, Block, Reference, Rng};
use memledger::OWN_SCOPE;
use memledger_monitor::{Event, Sampler};

const THREADS: usize = 16;
/// Blocks a thread holds at most; beyond it, it frees before allocating.
const HOLD: usize = 2_000;
/// History entries the sampler keeps: full after 5 s at 10 ms.
const HISTORY: usize = 500;

/// Runs the soak for `MEMLEDGER_SOAK_SECS` seconds (default 60) under the binary's global
/// allocator, and checks the books, the crate's own memory and every reading.
pub fn run() {
    let seconds: u64 = std::env::var("MEMLEDGER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let run_for = Duration::from_secs(seconds);
    let scopes: Vec<String> = (0..12).map(|i| format!("soak/s{}/t{}", i % 4, i)).collect();
    let reference = Arc::new(Reference::new(&scopes));
    let scopes = Arc::new(scopes);
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(10))
        .max_history(HISTORY)
        .queue(4096)
        .start()
        .unwrap();
    let events = sampler.subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Block>()).unzip();
    let senders = Arc::new(senders);
    let started = Instant::now();
    let workers: Vec<_> = receivers
        .into_iter()
        .enumerate()
        .map(|(me, inbox)| {
            let (reference, scopes, senders, stop) = (
                reference.clone(),
                scopes.clone(),
                senders.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = Rng::new(0x50a4 + me as u64);
                let mut mine: Vec<Block> = Vec::with_capacity(HOLD + 64);
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    while let Ok(block) = inbox.try_recv() {
                        mine.push(block);
                    }
                    let roll = rng.below(100);
                    if mine.is_empty() || (mine.len() < HOLD && roll < 40) {
                        let scope = rng.below(scopes.len() as u64) as usize;
                        let layout = Layout::from_size_align(rng.size(), rng.align()).unwrap();
                        let ptr = alloc_in(&scopes[scope], layout, roll % 4 == 0);
                        reference.alloc(ptr, scope, layout.size());
                        mine.push(Block {
                            ptr: ptr as usize,
                            layout,
                        });
                    } else {
                        let block = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        match roll % 10 {
                            0..=5 => {
                                reference.free(block.ptr as *mut u8);
                                // SAFETY: a live block with its layout, freed once.
                                unsafe { dealloc(block.ptr as *mut u8, block.layout) };
                            }
                            6..=7 => {
                                let (owner, old) = reference.take(block.ptr as *mut u8);
                                let new = rng.size();
                                // SAFETY: a live block with its layout, a non-zero new size.
                                let moved =
                                    unsafe { realloc(block.ptr as *mut u8, block.layout, new) };
                                assert!(!moved.is_null());
                                reference.put_resized(moved, owner, old, new);
                                mine.push(Block {
                                    ptr: moved as usize,
                                    layout: Layout::from_size_align(new, block.layout.align())
                                        .unwrap(),
                                });
                            }
                            _ => {
                                let to = rng.below(THREADS as u64) as usize;
                                senders[to].send(block).unwrap();
                            }
                        }
                    }
                    ops += 1;
                }
                (mine, inbox, ops)
            })
        })
        .collect();

    // The main thread reads every sample while the workers run.
    let mut readings = 0u64;
    let mut samples = 0usize;
    let mut own_at_fill = None;
    let mut own_max_after = 0u64;
    while started.elapsed() < run_for {
        let Some(event) = events.recv_timeout(Duration::from_secs(5)) else {
            panic!("no sample for 5 s");
        };
        let Event::Sample(sample) = event else {
            continue;
        };
        samples += 1;
        if let Ok(r) = &sample.reconciliation {
            let a = r
                .allocator
                .as_ref()
                .expect("jemalloc is the global allocator");
            assert!(
                r.ledger_bytes + r.tag_bytes <= a.allocated,
                "reading {readings}: ledger {} + tags {} > allocated {}",
                r.ledger_bytes,
                r.tag_bytes,
                a.allocated
            );
            readings += 1;
        }
        let own = sample.snapshot.scope(OWN_SCOPE).map_or(0, |s| s.live_bytes);
        // The history ring is full after HISTORY ticks; from a little later on, the crate's own
        // memory must stay where it was.
        if samples > HISTORY + 100 {
            own_at_fill.get_or_insert(own);
            own_max_after = own_max_after.max(own);
        }
    }
    stop.store(true, Ordering::Relaxed);
    // Every worker is joined before any inbox is dropped: a worker still finishing its last step
    // may send to any other's inbox.
    let finished: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let mut leftovers = Vec::new();
    let mut total_ops = 0;
    for (mine, inbox, ops) in finished {
        leftovers.extend(mine);
        leftovers.extend(inbox.try_iter());
        total_ops += ops;
    }
    reference.check("after the load");
    let stats = sampler.stats();
    sampler.stop();
    for block in leftovers {
        reference.free(block.ptr as *mut u8);
        // SAFETY: a live block with its layout, freed once.
        unsafe { dealloc(block.ptr as *mut u8, block.layout) };
    }
    reference.check("after every block was freed");
    let own_at_fill = own_at_fill.expect("the sampler's history filled up during the run");
    println!(
        "soak: {THREADS} threads, {seconds} s, {total_ops} operations, {} ticks, {readings} \
         readings checked, {} events dropped; crate's own memory {own_at_fill} B once the history \
         was full, at most {own_max_after} B after",
        stats.ticks, stats.dropped_events
    );
    assert!(readings > 0, "no reading was checked");
    // Flat: no more than 10 % (and 64 KiB of slack for snapshot sizes) above its level once the
    // history was full.
    assert!(
        own_max_after <= own_at_fill + own_at_fill / 10 + 64 * 1024,
        "the crate's own memory grew: {own_at_fill} -> {own_max_after}"
    );
}
