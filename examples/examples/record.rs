//! Records a sampler's ticks to a JSON Lines file while a workload runs, reads the recording back
//! and turns it into the HTML report.
//!
//! ```text
//! cargo run --release --example record [-- OUT_DIR]
//! ```
//!
//! The recording can also be turned into a report by the command:
//! `cargo run -p memledger-report -- OUT_DIR/record.jsonl`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use memledger_monitor::{Recording, RecordingWriter, Sampler};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or("target/memledger-record".into()),
    );
    std::fs::create_dir_all(&out)?;
    let path = out.join("record.jsonl");

    let sampler = Sampler::builder()
        .interval(Duration::from_millis(50))
        .start()?;
    let recorder = RecordingWriter::create(&sampler, &path)?;

    // A cache that grows, then is cleared; a log that only grows.
    let mut cache: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut log: Vec<String> = Vec::new();
    for round in 0..60u64 {
        memledger::in_scope("cache", || {
            for i in 0..200 {
                cache.insert(round * 200 + i, vec![0u8; 512]);
            }
            if round % 20 == 19 {
                cache.clear();
                cache.shrink_to_fit();
            }
        });
        memledger::in_scope("log", || {
            log.push(format!("round {round}: {} entries", cache.len()))
        });
        std::thread::sleep(Duration::from_millis(20));
    }

    let stats = recorder.stop()?;
    sampler.stop();
    let recording = Recording::open(&path)?;
    let report = out.join("record.html");
    std::fs::write(&report, memledger_report::render_html(&recording))?;
    println!(
        "recorded {} samples ({} bytes, {} dropped) to {}\nreport: {}",
        stats.samples,
        stats.bytes,
        stats.dropped,
        path.display(),
        report.display()
    );
    Ok(())
}
