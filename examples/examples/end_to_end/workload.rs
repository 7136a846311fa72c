//! The end-to-end workload, shared by `end_to_end` (over the ledger) and `end_to_end_bare` (over
//! bare jemalloc): real crates with threads of their own, as a program uses them.
//!
//! 1. `corpus`: this thread builds 200 000 JSON documents as strings;
//! 2. `parse`: rayon's pool parses them with serde_json and splits their text into tokens;
//! 3. `index`: this thread merges the tokens into an inverted index,
//!    `HashMap<String, Vec<u32>>`;
//! 4. `compress`: rayon's pool serializes the index in chunks and compresses each with flate2;
//! 5. the corpus is freed on rayon's threads (blocks of one thread's scope freed by others).
//!
//! Prints one line: wall time in milliseconds, the process's peak RSS, its RSS at the end and the
//! mean and maximum of its RSS read every 100 ms over the run, in KiB, and the compressed size (the
//! same in every build, a check that the work is the same).

use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use memledger_examples::{rss_kib, Rng, RssOverRun};
use rayon::prelude::*;

const DOCUMENTS: usize = 200_000;

const WORDS: [&str; 16] = [
    "index", "project", "symbol", "query", "ledger", "scope", "memory", "thread", "parse", "token",
    "search", "global", "commit", "branch", "module", "crate",
];

fn corpus() -> Vec<String> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..DOCUMENTS)
        .map(|id| {
            let words: Vec<&str> = (0..5 + rng.next() % 40)
                .map(|_| WORDS[(rng.next() % 16) as usize])
                .collect();
            serde_json::json!({
                "id": id,
                "path": format!("src/module_{}/file_{id}.rs", id % 97),
                "text": words.join(" "),
                "tags": [words[0], words[words.len() / 2]],
            })
            .to_string()
        })
        .collect()
}

/// Parses every document on rayon's pool; returns (document id, tokens).
fn parse(corpus: &[String]) -> Vec<(u32, Vec<String>)> {
    corpus
        .par_iter()
        .map(|doc| {
            memledger::in_scope("parse", || {
                let value: serde_json::Value = serde_json::from_str(doc).expect("valid JSON");
                let id = value["id"].as_u64().expect("an id") as u32;
                let tokens = value["text"]
                    .as_str()
                    .expect("a text")
                    .split(' ')
                    .chain(value["path"].as_str().expect("a path").split('/'))
                    .map(str::to_owned)
                    .collect();
                (id, tokens)
            })
        })
        .collect()
}

fn index(parsed: Vec<(u32, Vec<String>)>) -> HashMap<String, Vec<u32>> {
    let mut index: HashMap<String, Vec<u32>> = HashMap::new();
    for (id, tokens) in parsed {
        for token in tokens {
            index.entry(token).or_default().push(id);
        }
    }
    index
}

/// Serializes the index in 64 chunks and compresses each on rayon's pool; returns the total
/// compressed size.
fn compress(index: &HashMap<String, Vec<u32>>) -> usize {
    let mut entries: Vec<(&String, &Vec<u32>)> = index.iter().collect();
    entries.sort();
    let chunk = entries.len().div_ceil(64).max(1);
    entries
        .par_chunks(chunk)
        .map(|chunk| {
            memledger::in_scope("compress", || {
                let json = serde_json::to_vec(chunk).expect("serializable");
                let mut encoder =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(&json).expect("in memory");
                encoder.finish().expect("in memory").len()
            })
        })
        .sum()
}

pub fn run() {
    let start = Instant::now();
    let over_the_run = RssOverRun::start();
    let corpus = memledger::in_scope("corpus", corpus);
    let parsed = parse(&corpus);
    let index = memledger::in_scope("index", || index(parsed));
    let compressed = compress(&index);
    // Freed on rayon's threads, in pieces.
    corpus.into_par_iter().with_min_len(1024).for_each(drop);
    let wall = start.elapsed();
    let (rss_mean, rss_max) = over_the_run.stop();
    let (peak, rss) = rss_kib();
    println!(
        "wall_ms={} peak_rss_kib={peak} rss_kib={rss} rss_mean_kib={rss_mean} \
         rss_max_kib={rss_max} compressed={compressed} tokens={}",
        wall.as_millis(),
        index.len()
    );
}
