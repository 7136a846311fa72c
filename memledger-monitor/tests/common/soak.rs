//! The soak tests' body, run by one test binary per global allocator: `tests/soak.rs`
//! (`Ledger<Jemalloc>`, scope arenas), `tests/soak_trailer.rs` (`Ledger<TrailerOnly<Jemalloc>>`)
//! and `tests/soak_system.rs` (`Ledger<System>`).
//!
//! 16 threads allocate, zero, resize and free blocks across 12 scopes, and hand blocks to each
//! other to free, while a sampler ticks every 10 ms. The run is cut into rounds of 5 s. At the end
//! of each round the workers stop and hand every live block to the main thread, which checks the
//! allocator's own figures against those blocks twice: while the workers are still alive with
//! their caches ([`Checks::paused`]), and after they exited ([`Checks::quiescent`]). The next
//! round's workers take the blocks over. What is checked:
//!
//! - after every round and at the end, the books equal a naive reference ledger's exactly, and
//!   the blocks handed over are exactly the reference's live blocks;
//! - every sampler reading passes the binary's [`Checks::reading`];
//! - the crate's own memory stays flat once the sampler's history ring is full: its lowest
//!   reading in each round, since a reading also counts the samples queued for a reader that
//!   lags (about 7.5 KiB each);
//! - whatever the binary checks at the pauses, the quiescent points and the end.

use std::alloc::{dealloc, realloc, Layout};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use crate::common::{alloc_in, Block, Reference, Rng};
use memledger::OWN_SCOPE;
use memledger_monitor::{Event, Reconciliation, Sampler};

pub const THREADS: usize = 16;
/// Blocks a thread holds at most; beyond it, it frees before allocating.
pub const HOLD: usize = 2_000;
/// History entries the sampler keeps: full after 2 s at 10 ms, and within the first two rounds
/// where a loaded machine lets the sampler tick only 40 times a second (as seen with 16 workers on
/// 2 busy cores).
const HISTORY: usize = 200;
/// The length of a round: the workers stop this often for the checks of a quiescent point.
const ROUND: Duration = Duration::from_secs(5);

/// A live block and the index of the scope that owns it.
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub block: Block,
    pub scope: usize,
}

/// What a soak binary checks beyond the books, for its global allocator.
pub trait Checks {
    /// Each reading of the sampler, while the workers run.
    fn reading(&mut self, r: &Reconciliation);
    /// At the end of a round: the workers are stopped but alive, with whatever their caches
    /// hold; `live` is every live block of the soak's scopes.
    fn paused(&mut self, round: usize, scopes: &[String], live: &[Held]);
    /// After the round's workers exited (their caches given back): `live` as above.
    fn quiescent(&mut self, round: usize, scopes: &[String], live: &[Held]);
    /// After every block was freed, by the main thread.
    fn end(&mut self, scopes: &[String]);
    /// A line of the figures this binary checked, for the output.
    fn summary(&self) -> String;
}

/// A reading over jemalloc: the ledger's bytes and their tags fit within jemalloc's `allocated`.
#[allow(dead_code)] // Not by the soak over the system allocator.
pub fn ledger_within_allocated(r: &Reconciliation) {
    let a = r
        .allocator
        .as_ref()
        .expect("jemalloc is the global allocator");
    assert!(
        r.ledger_bytes + r.tag_bytes <= a.allocated,
        "ledger {} + tags {} > allocated {}",
        r.ledger_bytes,
        r.tag_bytes,
        a.allocated
    );
}

/// The soak's scopes: 12 paths under 4 parents.
pub fn scopes() -> Vec<String> {
    (0..12).map(|i| format!("soak/s{}/t{}", i % 4, i)).collect()
}

/// How a round's workers and the main thread meet at its end.
struct Meet {
    /// Each worker says here that it stopped sending blocks.
    stopped: mpsc::Sender<()>,
    /// The main thread lets the worker go on: once when every worker stopped, once after its
    /// checks. A closed gate (the main thread failed) lets it go too.
    gate: mpsc::Receiver<()>,
    /// Each worker hands its blocks over here.
    done: mpsc::Sender<Vec<Held>>,
}

/// How long the main thread waits for a worker at the end of a round before it reports it lost.
const LOST: Duration = Duration::from_secs(60);

/// One worker of a round: churns until `stop`, then says so and waits for every other worker to
/// stop sending, takes in what its inbox holds, hands its blocks over, and waits again while the
/// main thread checks. Returns its operations.
#[allow(clippy::too_many_arguments)]
fn worker(
    me: usize,
    round: usize,
    mut mine: Vec<Held>,
    inbox: mpsc::Receiver<Held>,
    senders: Arc<Vec<mpsc::Sender<Held>>>,
    reference: Arc<Reference>,
    scopes: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
    meet: Meet,
) -> u64 {
    let mut rng = Rng::new(0x50a4 + (round * THREADS + me) as u64);
    mine.reserve(HOLD + 64);
    let mut ops = 0u64;
    while !stop.load(Ordering::Relaxed) {
        while let Ok(held) = inbox.try_recv() {
            mine.push(held);
        }
        let roll = rng.below(100);
        if mine.is_empty() || (mine.len() < HOLD && roll < 40) {
            let scope = rng.below(scopes.len() as u64) as usize;
            let layout = Layout::from_size_align(rng.size(), rng.align()).unwrap();
            let ptr = alloc_in(&scopes[scope], layout, roll % 4 == 0);
            reference.alloc(ptr, scope, layout.size());
            mine.push(Held {
                block: Block {
                    ptr: ptr as usize,
                    layout,
                },
                scope,
            });
        } else {
            let held = mine.swap_remove(rng.below(mine.len() as u64) as usize);
            let block = held.block;
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
                    let moved = unsafe { realloc(block.ptr as *mut u8, block.layout, new) };
                    assert!(!moved.is_null());
                    reference.put_resized(moved, owner, old, new);
                    mine.push(Held {
                        block: Block {
                            ptr: moved as usize,
                            layout: Layout::from_size_align(new, block.layout.align()).unwrap(),
                        },
                        scope: owner,
                    });
                }
                _ => {
                    let to = rng.below(THREADS as u64) as usize;
                    senders[to].send(held).unwrap();
                }
            }
        }
        ops += 1;
    }
    meet.stopped.send(()).unwrap();
    // Every worker has stopped sending once the gate opens.
    let _ = meet.gate.recv();
    mine.extend(inbox.try_iter());
    meet.done.send(mine).unwrap();
    // The main thread checks while this thread is alive with its caches.
    let _ = meet.gate.recv();
    ops
}

/// Asserts that `live` is exactly the reference's live blocks, scope by scope.
fn check_handed_over(reference: &Reference, scopes: &[String], live: &[Held]) {
    let expected = reference.expected();
    let mut blocks = vec![0u64; scopes.len()];
    let mut bytes = vec![0u64; scopes.len()];
    for held in live {
        blocks[held.scope] += 1;
        bytes[held.scope] += held.block.layout.size() as u64;
    }
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(
            (blocks[i], bytes[i]),
            (e.allocs - e.frees, e.live),
            "scope {}: the blocks handed over are not the reference's",
            scopes[i]
        );
    }
}

/// Runs the soak for `MEMLEDGER_SOAK_SECS` seconds (default 60) under the binary's global
/// allocator, and checks the books, the crate's own memory, and what `checks` checks.
pub fn run(checks: &mut dyn Checks) {
    let seconds: u64 = std::env::var("MEMLEDGER_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let run_for = Duration::from_secs(seconds);
    let rounds = (seconds.div_ceil(ROUND.as_secs()) as usize).max(1);
    let round_for = run_for / rounds as u32;
    let scopes = scopes();
    let reference = Arc::new(Reference::new(&scopes));
    let scopes = Arc::new(scopes);
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(10))
        .max_history(HISTORY)
        .queue(4096)
        .start()
        .unwrap();
    let events = sampler.subscribe();

    let mut live: Vec<Held> = Vec::new();
    let mut readings = 0u64;
    let mut samples = 0usize;
    // The crate's own memory once the history is full: its lowest reading in the first round
    // that has one, the most of the lowest readings of the later rounds, and its highest reading.
    let mut own_floor_first: Option<u64> = None;
    let mut own_floor_after = 0u64;
    let mut later_rounds = 0;
    let mut own_max_after = 0u64;
    // When the main thread last caught up with the samples after a round's checks.
    let mut settled = SystemTime::UNIX_EPOCH;
    let mut total_ops = 0u64;
    for round in 0..rounds {
        let mut own_floor: Option<u64> = None;
        let stop = Arc::new(AtomicBool::new(false));
        let (stopped, stops) = mpsc::channel::<()>();
        let (done, handed) = mpsc::channel::<Vec<Held>>();
        let (gates, gate_ends): (Vec<_>, Vec<_>) = (0..THREADS).map(|_| mpsc::channel()).unzip();
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..THREADS).map(|_| mpsc::channel::<Held>()).unzip();
        let senders = Arc::new(senders);
        // The blocks of the last round, dealt out round-robin.
        let mut shares: Vec<Vec<Held>> = vec![Vec::new(); THREADS];
        for (i, held) in live.drain(..).enumerate() {
            shares[i % THREADS].push(held);
        }
        let started = Instant::now();
        let workers: Vec<_> = receivers
            .into_iter()
            .zip(shares)
            .zip(gate_ends)
            .enumerate()
            .map(|(me, ((inbox, mine), gate))| {
                let meet = Meet {
                    stopped: stopped.clone(),
                    gate,
                    done: done.clone(),
                };
                let (senders, reference, scopes, stop) = (
                    senders.clone(),
                    reference.clone(),
                    scopes.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    worker(
                        me, round, mine, inbox, senders, reference, scopes, stop, meet,
                    )
                })
            })
            .collect();
        drop((stopped, done));
        let open_gates = || {
            for gate in &gates {
                gate.send(()).unwrap();
            }
        };

        // The main thread reads every sample while the workers run.
        while started.elapsed() < round_for {
            let Some(event) = events.recv_timeout(Duration::from_secs(5)) else {
                panic!("no sample for 5 s");
            };
            let Event::Sample(sample) = event else {
                continue;
            };
            samples += 1;
            if let Ok(r) = &sample.reconciliation {
                checks.reading(r);
                readings += 1;
            }
            let own = sample.snapshot.scope(OWN_SCOPE).map_or(0, |s| s.live_bytes);
            // The history ring is full after HISTORY ticks; from a little later on, the crate's
            // own memory must stay where it was. The samples queued for this thread are the
            // crate's own memory too: those taken while it was checking a round's end are left
            // out, and the lowest reading of a round is the one compared.
            if samples > HISTORY + 100 && sample.at >= settled {
                own_floor = Some(own_floor.map_or(own, |floor: u64| floor.min(own)));
                own_max_after = own_max_after.max(own);
            }
        }
        stop.store(true, Ordering::Relaxed);
        for _ in 0..THREADS {
            stops
                .recv_timeout(LOST)
                .expect("a worker stopped answering");
        }
        open_gates();
        for _ in 0..THREADS {
            live.extend(
                handed
                    .recv_timeout(LOST)
                    .expect("a worker stopped answering"),
            );
        }
        check_handed_over(&reference, &scopes, &live);
        checks.paused(round, &scopes, &live);
        open_gates();
        total_ops += workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>();
        reference.check(&format!("after round {round}"));
        checks.quiescent(round, &scopes, &live);
        // The samples queued during the checks: their readings are checked, and the crate's own
        // memory is read again from the next sample on.
        while let Some(event) = events.try_recv() {
            if let Event::Sample(sample) = event {
                samples += 1;
                if let Ok(r) = &sample.reconciliation {
                    checks.reading(r);
                    readings += 1;
                }
            }
        }
        settled = SystemTime::now();
        if let Some(floor) = own_floor {
            if own_floor_first.is_none() {
                own_floor_first = Some(floor);
            } else {
                own_floor_after = own_floor_after.max(floor);
                later_rounds += 1;
            }
        }
    }
    let stats = sampler.stats();
    sampler.stop();
    for held in live {
        reference.free(held.block.ptr as *mut u8);
        // SAFETY: a live block with its layout, freed once.
        unsafe { dealloc(held.block.ptr as *mut u8, held.block.layout) };
    }
    reference.check("after every block was freed");
    checks.end(&scopes);
    let own_floor_first = own_floor_first.expect("the sampler's history filled up during the run");
    println!(
        "soak: {THREADS} threads, {seconds} s in {rounds} rounds, {total_ops} operations, {} \
         ticks, {readings} readings checked, {} events dropped; crate's own memory: lowest \
         reading {own_floor_first} B in the first round with the history full, at most \
         {own_floor_after} B in the {later_rounds} rounds after, highest reading {own_max_after} B",
        stats.ticks, stats.dropped_events
    );
    println!("{}", checks.summary());
    assert!(readings > 0, "no reading was checked");
    // The history is full (and 100 more samples read) within the first two rounds: from three
    // rounds on, later rounds are compared with it.
    assert!(
        rounds < 3 || later_rounds > 0,
        "no round after the history filled up"
    );
    // Flat: no round's lowest reading more than 10 % (and 64 KiB of slack for snapshot sizes)
    // above the first's.
    assert!(
        own_floor_after <= own_floor_first + own_floor_first / 10 + 64 * 1024,
        "the crate's own memory grew: {own_floor_first} -> {own_floor_after}"
    );
}
