//! The tracing layer: spans with a `mem.scope` field (or every span, by name) book what runs
//! inside them to their scope, on whichever thread they are entered.

use std::sync::Once;

use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// The process-wide subscriber: spans named by their `mem.scope` field.
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(memledger_tracing::ScopeLayer::new());
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

fn live(path: &str) -> Option<(u64, u64)> {
    memledger::snapshot()
        .scope(path)
        .map(|s| (s.live_bytes, s.allocations))
}

#[test]
fn a_span_with_the_field_books_to_its_scope() {
    install();
    let span = tracing::info_span!("build_index", mem.scope = "tr_field");
    let held = span.in_scope(|| vec![1u8; 5000]);
    assert_eq!(live("tr_field"), Some((5000, 1)));
    // Outside the span, nothing more is booked there.
    let after = vec![2u8; 300];
    assert_eq!(live("tr_field"), Some((5000, 1)));
    drop(held);
    assert_eq!(live("tr_field"), Some((0, 1)));
    drop(after);

    // A span without the field has no scope.
    let plain = tracing::info_span!("tr_plain_span");
    let kept = plain.in_scope(|| vec![0u8; 10]);
    assert_eq!(live("tr_plain_span"), None);
    drop(kept);
}

#[test]
fn nested_spans_nest_scopes_and_follow_the_span_to_other_threads() {
    install();
    let outer = tracing::info_span!("project", mem.scope = "tr_nested");
    let inner = outer.in_scope(|| tracing::info_span!("parse", mem.scope = "parse"));
    // The inner span is entered on other threads, with no scope of their own: its scope is fixed
    // when it was made, under the outer span's.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let inner = inner.clone();
            std::thread::spawn(move || inner.in_scope(|| vec![t as u8; 1000 + t]))
        })
        .collect();
    let blocks: Vec<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // (What tracing's registry allocated to make the inner span is booked to the outer one.)
    assert_eq!(live("tr_nested/parse"), Some((4000 + 6, 4)));
    drop(blocks);
    assert_eq!(live("tr_nested/parse"), Some((0, 4)));
}

/// `Instrument` enters the span on every poll: instrumented tasks keep their scope as the runtime
/// moves them between threads.
#[test]
fn instrumented_tasks_on_a_multi_thread_runtime() {
    install();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_time()
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|i| {
            let span = tracing::info_span!("task", mem.scope = "tr_tasks");
            rt.spawn(
                async move {
                    let mut kept = Vec::new();
                    for step in 0..20u64 {
                        // `kept` grows inside the span too: count only the inner blocks by
                        // giving them a scope of their own.
                        let block = {
                            let _g = memledger::scope!("block");
                            vec![0u8; (64 + i * 8 + step) as usize]
                        };
                        kept.push(block);
                        tokio::time::sleep(std::time::Duration::from_micros(100)).await;
                    }
                    kept
                }
                .instrument(span),
            )
        })
        .collect();
    let results: Vec<_> = rt.block_on(async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let expected: u64 = (0..8u64)
        .flat_map(|i| (0..20u64).map(move |s| 64 + i * 8 + s))
        .sum();
    assert_eq!(live("tr_tasks/block"), Some((expected, 160)));
    drop(results);
    assert_eq!(live("tr_tasks/block"), Some((0, 160)));
}

#[test]
fn span_names_mode_gives_every_span_a_scope() {
    let subscriber =
        tracing_subscriber::registry().with(memledger_tracing::ScopeLayer::span_names());
    tracing::subscriber::with_default(subscriber, || {
        // The blocks get a scope of their own under the span's: making the child span allocates
        // inside the parent's.
        let data = |n| {
            let _g = memledger::scope!("data");
            vec![0u8; n]
        };
        let held = tracing::info_span!("tr_by_name").in_scope(|| {
            let a = data(111);
            let b = tracing::info_span!("child").in_scope(|| data(222));
            (a, b)
        });
        assert_eq!(live("tr_by_name/data"), Some((111, 1)));
        assert_eq!(live("tr_by_name/child/data"), Some((222, 1)));
        drop(held);
    });
}

#[test]
fn another_field_name() {
    let subscriber =
        tracing_subscriber::registry().with(memledger_tracing::ScopeLayer::field("component"));
    tracing::subscriber::with_default(subscriber, || {
        let held = tracing::info_span!("x", component = "tr_component").in_scope(|| vec![0u8; 99]);
        assert_eq!(live("tr_component"), Some((99, 1)));
        drop(held);
    });
}
