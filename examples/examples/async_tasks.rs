//! Scopes that follow the work across threads: tokio tasks wrapped with `in_scope`, and a rayon
//! pool entered with a `ScopeHandle`.
//!
//! A small service answers requests on a multi-thread runtime. Each request task is wrapped in
//! the scope of the component that serves it; the runtime moves tasks between its threads at
//! every `.await`, and every poll is booked to the task's scope. A batch job hands its work to a
//! rayon pool with a handle to its scope, so the pool's threads book to it too.
//!
//! ```text
//! cargo run --release --example async_tasks
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use memledger::{ScopeExt, ScopeHandle};
use rayon::prelude::*;
use tokio::sync::Mutex;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// A cache of query results, shared by the request tasks.
type Cache = Arc<Mutex<HashMap<String, Vec<u32>>>>;

async fn serve_query(cache: Cache, query: u32) -> usize {
    // Simulated I/O: the task may resume on another thread.
    tokio::time::sleep(Duration::from_millis(u64::from(query % 5))).await;
    let key = format!("query_{}", query % 200);
    let hits: Vec<u32> = (0..(query % 64) * 16).collect();
    let n = hits.len();
    cache.lock().await.insert(key, hits);
    n
}

async fn render_page(page: u32) -> String {
    tokio::time::sleep(Duration::from_millis(1)).await;
    (0..50)
        .map(|i| format!("<li>result {page}.{i}</li>"))
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let cache: Cache = Arc::default();

    let pages = rt.block_on(async {
        let mut queries = Vec::new();
        let mut renders = Vec::new();
        for i in 0..2_000u32 {
            queries.push(tokio::spawn(
                serve_query(Arc::clone(&cache), i).in_scope("query_cache"),
            ));
            if i % 10 == 0 {
                renders.push(tokio::spawn(render_page(i).in_scope("rendering")));
            }
        }
        for q in queries {
            q.await.unwrap();
        }
        let mut pages = Vec::new();
        for r in renders {
            pages.push(r.await.unwrap());
        }
        pages
    });

    // A batch job on a thread pool: the handle carries the job's scope to the pool's threads.
    let job = memledger::in_scope("batch_reindex", ScopeHandle::current);
    let postings: Vec<Vec<u64>> = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap()
        .install(|| {
            (0..256u64)
                .into_par_iter()
                .map(|shard| job.in_scope(|| (0..shard * 64).collect()))
                .collect()
        });

    let snap = memledger::snapshot();
    println!("{snap}");
    for path in ["query_cache", "rendering", "batch_reindex"] {
        let s = snap.scope(path).unwrap();
        println!(
            "{path:>14}: {:>9} live bytes in {:>5} blocks, booked from every worker thread",
            s.live_bytes,
            s.live_blocks()
        );
    }
    drop((pages, postings));
}
