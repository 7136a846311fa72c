//! What does a component cost in memory? `memledger::measure` runs a piece of work in a scope of
//! its own and says what it allocated, per scope and in total: here, two ways of building the
//! same word index, one of them spreading its work over threads with a `ScopeHandle`.
//!
//! ```text
//! cargo run --release --example measure
//! ```

use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// Some text: 40 000 words from a vocabulary of 3 000.
fn words() -> Vec<String> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..40_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            format!("word{}", state % 3_000)
        })
        .collect()
}

/// Word → positions, in one pass on this thread.
fn hash_index(words: &[String]) -> HashMap<String, Vec<u32>> {
    let mut index: HashMap<String, Vec<u32>> = HashMap::new();
    for (i, w) in words.iter().enumerate() {
        index.entry(w.clone()).or_default().push(i as u32);
    }
    index
}

/// Word → positions, built in four parts on four threads (booked to the measured scope through a
/// handle, in a child scope `part`), then merged into a sorted map.
fn merged_index(words: &[String]) -> BTreeMap<String, Vec<u32>> {
    let here = memledger::ScopeHandle::current();
    let parts: Vec<HashMap<String, Vec<u32>>> = std::thread::scope(|s| {
        let handles: Vec<_> = words
            .chunks(words.len() / 4 + 1)
            .enumerate()
            .map(|(n, chunk)| {
                s.spawn(move || {
                    let _g = here.child("part").enter();
                    let base = (n * (words.len() / 4 + 1)) as u32;
                    let mut part: HashMap<String, Vec<u32>> = HashMap::new();
                    for (i, w) in chunk.iter().enumerate() {
                        part.entry(w.clone()).or_default().push(base + i as u32);
                    }
                    part
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut index = BTreeMap::new();
    for part in parts {
        for (w, mut positions) in part {
            index
                .entry(w)
                .or_insert_with(Vec::new)
                .append(&mut positions);
        }
    }
    index
}

fn main() {
    let words = words();
    let hash = memledger::measure("hash_index", || hash_index(&words));
    let merged = memledger::measure("merged_index", || merged_index(&words));
    for (name, footprint) in [
        ("hash_index", &hash.footprint),
        ("merged_index", &merged.footprint),
    ] {
        let total = footprint.total();
        println!(
            "{name}: allocated {} bytes in {} blocks, peak at most {} bytes, kept {} bytes\n{footprint}",
            total.allocated_bytes,
            total.allocations,
            total.peak_above_start(),
            total.retained_bytes(),
        );
    }
    assert_eq!(hash.value.len(), merged.value.len());
}
