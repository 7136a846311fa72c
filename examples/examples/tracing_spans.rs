//! A program instrumented with `tracing` gets a per-component breakdown from its spans, with
//! `memledger_tracing::ScopeLayer` and no other change.
//!
//! Spans that carry a `mem.scope` field book everything allocated while they are entered to that
//! scope; nested spans nest scopes. Tasks instrumented with a span keep their scope on every
//! thread the runtime polls them on.
//!
//! ```text
//! cargo run --release --example tracing_spans
//! ```

use std::time::Duration;

use tracing::{info_span, Instrument};
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

fn tokenize(source: &str) -> Vec<String> {
    let _span = info_span!("tokenize", mem.scope = "tokenize").entered();
    source
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

async fn index_project(project: u32) -> Vec<(String, u32)> {
    let mut postings = Vec::new();
    for file in 0..50u32 {
        let source: String = (0..200)
            .map(|i| {
                format!(
                    "fn item_{}_{} () {{ call_{} (); }}\n",
                    project,
                    i,
                    (i * file) % 97
                )
            })
            .collect();
        let tokens = tokenize(&source);
        postings.extend(tokens.into_iter().map(|t| (t, file)));
        tokio::task::yield_now().await;
    }
    postings.sort_unstable();
    postings.dedup();
    postings
}

fn main() {
    let subscriber = tracing_subscriber::registry().with(memledger_tracing::ScopeLayer::new());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let indexes = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|p| {
                let span = info_span!("project", id = p, mem.scope = "project_indexes");
                tokio::spawn(index_project(p).instrument(span))
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        out
    });

    let snap = memledger::snapshot();
    println!("{snap}");
    let held = snap.scope("project_indexes").unwrap();
    let tokens = snap.scope("project_indexes/tokenize").unwrap();
    println!(
        "project_indexes holds {} bytes; its tokenizer allocated {} bytes in {} blocks and freed \
         them all but {} bytes",
        held.live_bytes, tokens.allocated_bytes, tokens.allocations, tokens.live_bytes
    );
    drop(indexes);
}
