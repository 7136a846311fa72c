//! Footprint benchmarks: two ways of building the same symbol index (symbol → ids of the files
//! that mention it), compared by the bytes they allocate and by their peak per build, with the
//! criterion measurements of `memledger-criterion`.
//!
//! - `hash_map`: a `HashMap<String, Vec<u32>>` filled token by token, every posting list growing
//!   by doubling.
//! - `sorted_pairs`: every (symbol, file) pair collected into one `Vec`, sorted, deduplicated,
//!   then packed into one string arena and one postings array.
//!
//! ```text
//! cargo bench --bench footprint
//! ```

use std::collections::HashMap;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use memledger_criterion::{Allocated, Peak};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

const FILES: u32 = 400;
const TOKENS_PER_FILE: u32 = 200;
const SCOPE: &str = "footprint";

/// The token stream of one file: symbols drawn from a skewed vocabulary.
fn tokens(file: u32) -> impl Iterator<Item = String> {
    let mut state = u64::from(file).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..TOKENS_PER_FILE).map(move |_| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let a = (r % 2000).min((r >> 20) % 2000);
        format!("symbol_{a}")
    })
}

/// Symbol → file ids, grown token by token.
fn hash_map() -> HashMap<String, Vec<u32>> {
    let _g = memledger::scope!(SCOPE);
    let mut index: HashMap<String, Vec<u32>> = HashMap::new();
    for file in 0..FILES {
        for token in tokens(file) {
            let files = index.entry(token).or_default();
            if files.last() != Some(&file) {
                files.push(file);
            }
        }
    }
    index
}

/// The same index as sorted, packed arrays.
struct Packed {
    /// Every symbol, concatenated.
    arena: String,
    /// Per symbol: its end in `arena` and its end in `postings`.
    ends: Vec<(u32, u32)>,
    postings: Vec<u32>,
}

fn sorted_pairs() -> Packed {
    let _g = memledger::scope!(SCOPE);
    let mut pairs: Vec<(String, u32)> = (0..FILES)
        .flat_map(|file| tokens(file).map(move |t| (t, file)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut packed = Packed {
        arena: String::new(),
        ends: Vec::new(),
        postings: Vec::with_capacity(pairs.len()),
    };
    let mut last: Option<&str> = None;
    for (symbol, file) in &pairs {
        if last != Some(symbol.as_str()) {
            if last.is_some() {
                packed
                    .ends
                    .push((packed.arena.len() as u32, packed.postings.len() as u32));
            }
            packed.arena.push_str(symbol);
            last = Some(symbol);
        }
        packed.postings.push(*file);
    }
    packed
        .ends
        .push((packed.arena.len() as u32, packed.postings.len() as u32));
    packed.arena.shrink_to_fit();
    packed.ends.shrink_to_fit();
    packed
}

fn config<M: criterion::measurement::Measurement>(m: M) -> Criterion<M> {
    Criterion::default()
        .with_measurement(m)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_secs(2))
}

fn by_allocated(c: &mut Criterion<Allocated>) {
    let mut group = c.benchmark_group("index_allocated");
    group.bench_function(BenchmarkId::from_parameter("hash_map"), |b| {
        b.iter(hash_map)
    });
    group.bench_function(BenchmarkId::from_parameter("sorted_pairs"), |b| {
        b.iter(sorted_pairs)
    });
    group.finish();
}

fn by_peak(c: &mut Criterion<Peak>) {
    let mut group = c.benchmark_group("index_peak");
    group.bench_function(BenchmarkId::from_parameter("hash_map"), |b| {
        b.iter_custom(|iters| Peak::scope(SCOPE).iter(iters, hash_map))
    });
    group.bench_function(BenchmarkId::from_parameter("sorted_pairs"), |b| {
        b.iter_custom(|iters| Peak::scope(SCOPE).iter(iters, sorted_pairs))
    });
    group.finish();
}

/// What each index keeps once built, printed once beside the benchmarks.
fn retained(_: &mut Criterion) {
    for (name, footprint) in [
        (
            "hash_map",
            memledger::measure("retained", || drop(hash_map())).footprint,
        ),
        (
            "sorted_pairs",
            memledger::measure("retained", || drop(sorted_pairs())).footprint,
        ),
    ] {
        let kept = memledger::measure("retained", || match name {
            "hash_map" => Box::new(hash_map()) as Box<dyn std::any::Any>,
            _ => Box::new(sorted_pairs()),
        });
        println!(
            "{name}: allocated {} B in {} blocks, peak {} B, kept {} B",
            footprint.total().allocated_bytes,
            footprint.total().allocations,
            footprint.total().peak_above_start(),
            kept.footprint.total().retained_bytes()
        );
    }
}

criterion_group!(
    name = allocated;
    config = config(Allocated::scope(SCOPE));
    targets = by_allocated
);
criterion_group!(
    name = peak;
    config = config(Peak::scope(SCOPE));
    targets = by_peak
);
criterion_group!(kept, retained);
criterion_main!(kept, allocated, peak);
