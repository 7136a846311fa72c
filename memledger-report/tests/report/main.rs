//! The HTML report: the `memledger-report` command on good and bad recordings (`cli`), the page
//! rendered from a real recording (`page`), its flame graphs of sampled allocation sites
//! (`flame`), the page in a headless browser where Chromium is installed (`browser`), and the
//! `recording` fuzz target's check over its kept inputs (`fuzz_recording`).
//!
//! One test binary: its files share the workload recorded once by `recorded` and the helpers
//! here that read the page.

#[global_allocator]
static GLOBAL: memledger::Ledger<tikv_jemallocator::Jemalloc> =
    memledger::Ledger::new(tikv_jemallocator::Jemalloc);

mod browser;
mod cli;
mod flame;
mod fuzz_recording;
mod page;
#[path = "../../../memledger/tests/regressions/replay.rs"]
mod replay;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use memledger_monitor::{
    Budget, LeakDetection, Limit, ProcessMemory, Recording, RecordingWriter, Sampler,
};

/// The scopes the recorded workload books to.
const WORKLOAD_SCOPES: [&str; 4] = [
    "project_indexes",
    "global_index",
    "query_cache",
    "project_indexes/parse",
];

/// A fresh directory for one test.
fn temp_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("memledger-report-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The recording of a workload with four scopes over about a second, made once: its text and
/// what it reads as.
fn recorded() -> &'static (String, Recording) {
    static RECORDED: OnceLock<(String, Recording)> = OnceLock::new();
    RECORDED.get_or_init(|| {
        let dir = temp_dir("recorded");
        let path = dir.join("workload.jsonl");
        // Limits a little above what the process holds now, so that some fall on the chart.
        let rss = ProcessMemory::read()
            .map(|p| p.rss_bytes)
            .unwrap_or(64 << 20);
        let budget = Budget::builder()
            .total(rss + (96 << 20))
            .soft(Limit::Bytes(rss + (24 << 20)))
            .prompt(Limit::Bytes(rss + (40 << 20)))
            .hard(Limit::Bytes(rss + (64 << 20)))
            .build()
            .unwrap();
        let sampler = Sampler::builder()
            .interval(Duration::from_millis(20))
            .budget(budget)
            .leak_detection(LeakDetection {
                window: Duration::from_millis(800),
                min_rate: 1024.0,
                min_fit: 0.9,
                min_samples: 10,
            })
            .start()
            .unwrap();
        let recorder = RecordingWriter::create(&sampler, &path).unwrap();

        let mut indexes: Vec<Vec<u8>> = Vec::new();
        let mut global: Vec<u8> = Vec::new();
        let mut cache: Vec<Vec<u8>> = Vec::new();
        let mut parsed: Vec<Vec<u8>> = Vec::new();
        for step in 0..50u32 {
            {
                // Grows steadily: the suspected leak.
                let _g = memledger::scope!("project_indexes");
                indexes.push(vec![1u8; 256 << 10]);
                let _p = memledger::scope!("parse");
                parsed.push(vec![2u8; 64 << 10]);
                if parsed.len() > 6 {
                    parsed.remove(0);
                }
            }
            if step == 5 {
                // One big step, then flat.
                global = memledger::in_scope("global_index", || vec![3u8; 6 << 20]);
            }
            {
                // A sawtooth.
                let _g = memledger::scope!("query_cache");
                cache.push(vec![4u8; 160 << 10]);
                if step % 16 == 15 {
                    cache.clear();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        sampler.sample_now();
        let stats = recorder.stop().unwrap();
        sampler.stop();
        drop((indexes, global, cache, parsed));
        let recording = Recording::open(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(recording.samples.len() as u64, stats.samples);
        assert!(
            recording.samples.len() >= 10,
            "the workload was sampled {} times",
            recording.samples.len()
        );
        (text, recording)
    })
}

/// `text` as the page escapes it.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The part of `html` from `start` up to the next `end`.
fn between<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} is not in the page"));
    let rest = &html[from..];
    &rest[..rest.find(end).map_or(rest.len(), |at| at + end.len())]
}

/// Whether `html` holds a figure that is not a number (`NaN`, `inf`).
fn has_non_numbers(html: &str) -> bool {
    let bytes = html.as_bytes();
    html.contains("NaN")
        || html.match_indices("inf").any(|(at, _)| {
            let before = at.checked_sub(1).map(|i| bytes[i]);
            let after = bytes.get(at + 3).copied();
            !before.is_some_and(|b| b.is_ascii_alphabetic())
                && !after.is_some_and(|b| b.is_ascii_alphabetic())
        })
}

/// The `recording` fuzz target's check over its kept inputs: its seeds (`fuzz/seeds/recording`) and
/// the inputs that once failed it (`memledger/tests/regressions/recording`; every file there but
/// the README). A file that fails the check fails the test, by name.
#[test]
fn kept_fuzz_inputs_pass_the_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    replay::replay(&root, "recording", fuzz_recording::check);
}
