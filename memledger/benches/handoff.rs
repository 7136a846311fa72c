//! Memory handed between threads: documents built on one thread, in a scope, and freed on
//! another, for the ledger and bare jemalloc side by side in one run.
//!
//! A document is a text grown as a `String` grows when words are pushed onto it (8 bytes, then
//! doubling, to 10..=200 bytes) and a list of ids grown as a `Vec<u32>` grows (4 ids, then
//! doubling, to 1..=64 ids), each filled as it grows. Producers build documents in the scope
//! `producer` and send them in batches of 64 through a bounded channel; consumers free them.
//! Every allocator is called directly through [`GlobalAlloc`] (see `alloc_pairs`), so the
//! channels and batches, which come from the binary's own global allocator (bare jemalloc), cost
//! every variant the same.
//!
//! - `handoff/1to1/<variant>`: one producer, one consumer;
//! - `handoff/1to3/<variant>`: one producer, three consumers (the batches dealt in turn);
//! - `handoff/3to1/<variant>`: three producers, one consumer;
//! - `handoff/tokio/<variant>`: a service's shape on a tokio runtime of two worker threads: four
//!   producer tasks build documents in the scope (a synchronous `in_scope` around each batch, as a
//!   handler does between its awaits) and send them through tokio channels to two consumer tasks,
//!   which drop them; the runtime moves the tasks between its workers.
//!
//! Variants: `jemalloc` (bare), `trailer_only` (`Ledger<TrailerOnly<Jemalloc>>`) and `default`
//! (`Ledger<Jemalloc>`: scope arenas where the feature is on). Reported: time per document.
//!
//! For instruction counts, `MEMLEDGER_HANDOFF_LOOP=<shape>:<variant>:<documents>` runs only that
//! many documents through one shape and exits: run it under `valgrind --tool=callgrind` at two
//! counts and divide the difference by the difference of documents (callgrind runs one thread at
//! a time, so the count is the work per document, not its time).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_group, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use tikv_jemallocator::Jemalloc;

#[path = "support/mod.rs"]
mod support;
use support::{alloc_via, dealloc_via, xorshift, JEMALLOC, LEDGER_JEMALLOC};

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// Documents per batch sent through a channel.
const BATCH: usize = 64;
/// Batches a channel holds before its sender waits.
const QUEUE: usize = 16;

/// A block of the variant under test, with the layout it was last allocated or resized for.
#[derive(Clone, Copy)]
struct Block {
    ptr: usize,
    layout: Layout,
}

/// A document: its text and its ids.
struct Document([Block; 2]);

/// What a channel carries.
type Batch = Vec<Document>;

/// Resizes through `allocator` behind a call boundary (see `support::alloc_via`).
///
/// # Safety
///
/// - `block` is live in `allocator`; `new` is non-zero and valid at its alignment.
#[inline(never)]
unsafe fn realloc_via<A: GlobalAlloc>(allocator: &A, block: Block, new: usize) -> Block {
    // SAFETY:
    // - the caller's guarantee.
    let ptr = unsafe { allocator.realloc(block.ptr as *mut u8, block.layout, new) };
    let layout = Layout::from_size_align(new, block.layout.align()).expect("a valid size");
    if ptr.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    Block {
        ptr: ptr as usize,
        layout,
    }
}

/// Grows a block from `first` bytes by doubling until it holds `len` bytes, filling what it
/// holds each time, as a `String` or a `Vec` grows when it is pushed onto.
fn grow<A: GlobalAlloc>(allocator: &A, first: usize, align: usize, len: usize) -> Block {
    let layout = Layout::from_size_align(first, align).expect("a valid size");
    let mut block = Block {
        ptr: alloc_via(allocator, layout) as usize,
        layout,
    };
    loop {
        let size = block.layout.size();
        // SAFETY:
        // - a live block of `size` bytes.
        unsafe { (block.ptr as *mut u8).write_bytes(0x5a, size.min(len)) };
        if size >= len {
            return block;
        }
        // SAFETY:
        // - a live block of this allocator; twice its size is non-zero and stays small.
        block = unsafe { realloc_via(allocator, block, size * 2) };
    }
}

/// Builds one document from the sizes `state` draws.
fn build<A: GlobalAlloc>(allocator: &A, state: &mut u64) -> Document {
    let text = 10 + (xorshift(state) % 191) as usize;
    let ids = 1 + (xorshift(state) % 64) as usize;
    Document([grow(allocator, 8, 1, text), grow(allocator, 16, 4, 4 * ids)])
}

/// Frees a document.
fn free<A: GlobalAlloc>(allocator: &A, document: Document) {
    for block in document.0 {
        // SAFETY:
        // - each block is live with its layout, and freed once.
        unsafe { dealloc_via(allocator, block.ptr as *mut u8, block.layout) };
    }
}

/// The three shapes: producers and consumers.
#[derive(Clone, Copy)]
enum Shape {
    OneToOne,
    OneToThree,
    ThreeToOne,
    Tokio,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::OneToOne => "1to1",
            Shape::OneToThree => "1to3",
            Shape::ThreeToOne => "3to1",
            Shape::Tokio => "tokio",
        }
    }

    fn parse(name: &str) -> Shape {
        match name {
            "1to1" => Shape::OneToOne,
            "1to3" => Shape::OneToThree,
            "3to1" => Shape::ThreeToOne,
            "tokio" => Shape::Tokio,
            _ => panic!("a shape is 1to1, 1to3, 3to1 or tokio, not {name:?}"),
        }
    }

    fn producers(self) -> usize {
        match self {
            Shape::ThreeToOne => 3,
            Shape::Tokio => 4,
            _ => 1,
        }
    }

    fn consumers(self) -> usize {
        match self {
            Shape::OneToThree => 3,
            Shape::Tokio => 2,
            _ => 1,
        }
    }
}

/// Builds `documents` batches' worth of documents (rounded up to whole batches per producer),
/// hands them over and frees them; returns the time from the first build to the last free.
fn run<A: GlobalAlloc + Sync>(allocator: &'static A, shape: Shape, documents: u64) -> Duration {
    if let Shape::Tokio = shape {
        return run_tokio(allocator, documents);
    }
    let producers = shape.producers();
    let consumers = shape.consumers();
    let batches = documents.div_ceil((BATCH * producers) as u64) as usize;
    let (senders, receivers): (Vec<SyncSender<Batch>>, Vec<Receiver<Batch>>) =
        (0..consumers).map(|_| sync_channel(QUEUE)).unzip();
    let started = Instant::now();
    thread::scope(|s| {
        for receiver in receivers {
            s.spawn(move || {
                for batch in receiver {
                    for document in batch {
                        free(allocator, document);
                    }
                }
            });
        }
        for producer in 0..producers {
            let senders = senders.clone();
            s.spawn(move || {
                let _scope = memledger::scope!("producer");
                let mut state = 0x9e37_79b9_7f4a_7c15 ^ (producer as u64 + 1);
                for b in 0..batches {
                    let batch = (0..BATCH).map(|_| build(allocator, &mut state)).collect();
                    senders[b % senders.len()]
                        .send(batch)
                        .expect("the consumers outlive the producers");
                }
            });
        }
        drop(senders);
    });
    started.elapsed()
}

/// [`run`] for [`Shape::Tokio`]: producer and consumer tasks on a runtime of two workers. The
/// runtime is made before the clock starts and dropped after it stops.
fn run_tokio<A: GlobalAlloc + Sync>(allocator: &'static A, documents: u64) -> Duration {
    let shape = Shape::Tokio;
    let batches = documents.div_ceil((BATCH * shape.producers()) as u64) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    let started = Instant::now();
    runtime.block_on(async {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shape.consumers())
            .map(|_| tokio::sync::mpsc::channel::<Batch>(QUEUE))
            .unzip();
        let consumers: Vec<_> = receivers
            .into_iter()
            .map(|mut receiver| {
                tokio::spawn(async move {
                    while let Some(batch) = receiver.recv().await {
                        for document in batch {
                            free(allocator, document);
                        }
                    }
                })
            })
            .collect();
        let producers: Vec<_> = (0..shape.producers())
            .map(|producer| {
                let senders = senders.clone();
                tokio::spawn(async move {
                    let mut state = 0x9e37_79b9_7f4a_7c15 ^ (producer as u64 + 1);
                    for b in 0..batches {
                        let batch = memledger::in_scope("producer", || {
                            (0..BATCH).map(|_| build(allocator, &mut state)).collect()
                        });
                        senders[b % senders.len()]
                            .send(batch)
                            .await
                            .expect("the consumers outlive the producers");
                    }
                })
            })
            .collect();
        drop(senders);
        for task in producers.into_iter().chain(consumers) {
            task.await.expect("a task finished");
        }
    });
    let elapsed = started.elapsed();
    drop(runtime);
    elapsed
}

fn bench_variant<A: GlobalAlloc + Sync>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    allocator: &'static A,
    shape: Shape,
) {
    group.bench_function(BenchmarkId::new(shape.name(), name), |b| {
        b.iter_custom(|documents| run(allocator, shape, documents))
    });
}

fn handoff(c: &mut Criterion) {
    let mut group = c.benchmark_group("handoff");
    group.throughput(Throughput::Elements(1));
    for shape in [
        Shape::OneToOne,
        Shape::OneToThree,
        Shape::ThreeToOne,
        Shape::Tokio,
    ] {
        bench_variant(&mut group, "jemalloc", &JEMALLOC, shape);
        bench_variant(&mut group, "trailer_only", &LEDGER_JEMALLOC, shape);
        bench_variant(&mut group, "default", &support::LEDGER_ARENAS, shape);
    }
    group.finish();
}

/// `MEMLEDGER_HANDOFF_LOOP=<shape>:<variant>:<documents>`: one run of that many documents.
fn handoff_loop(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(shape), Some(variant), Some(documents), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("MEMLEDGER_HANDOFF_LOOP=<shape>:<variant>:<documents>, not {spec:?}");
    };
    let shape = Shape::parse(shape);
    let documents: u64 = documents.parse().expect("a number of documents");
    match variant {
        "jemalloc" => run(&JEMALLOC, shape, documents),
        "trailer_only" => run(&LEDGER_JEMALLOC, shape, documents),
        "default" => run(&support::LEDGER_ARENAS, shape, documents),
        _ => panic!("a variant is jemalloc, trailer_only or default, not {variant:?}"),
    };
}

criterion_group! {
    name = benches;
    config = support::config(20);
    targets = handoff
}

fn main() {
    // The same samples in every run, so that instruction counts stay comparable.
    memledger::sampling::set_seed(0);
    if let Ok(spec) = std::env::var("MEMLEDGER_HANDOFF_LOOP") {
        return handoff_loop(&spec);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
