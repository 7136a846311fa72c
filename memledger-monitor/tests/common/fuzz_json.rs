//! The check of the `json` fuzz target (`fuzz/fuzz_targets/json.rs`), shared with the test that
//! replays its kept inputs (`tests/json.rs`): any input either fails with an error or gives a
//! value that keeps its guarantees, survives every method a reader would call on it, and writes
//! back to JSON that reads as the same value.

use memledger::{Snapshot, SnapshotDiff};
use memledger_monitor::{
    from_json, to_json, Budget, Event, HistoryEntry, Reconciliation, Sample, SamplerStats,
    ScopeBudget, Status,
};

/// Reads `json` as a `T`; if it reads, writes it back and reads it again: the same value.
fn round_trip<T>(json: &str) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let value: T = from_json(json).ok()?;
    let again: T = from_json(&to_json(&value).expect("a value read writes back"))
        .expect("what was written reads back");
    assert_eq!(again, value, "a round trip changed the value");
    Some(value)
}

/// Panics where `data` breaks a guarantee.
pub fn check(data: &[u8]) {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(snap) = round_trip::<Snapshot>(json) {
        let _ = snap.to_string();
        let diff = snap.diff(&snap);
        assert!(diff.scopes.iter().all(|d| d.live_before == d.live_after));
        for scope in snap.scopes() {
            let subtree = snap.subtree(&scope.path).expect("a scope's subtree exists");
            assert!(
                subtree.live_bytes >= scope.live_bytes,
                "a subtree holds its root"
            );
            let _ = snap.children(&scope.path).count();
            let _ = snap.parent(&scope.path);
        }
    }
    if let Some(budget) = round_trip::<Budget>(json) {
        assert!(budget.total > 0);
        assert!(budget.soft <= budget.prompt && budget.prompt <= budget.hard);
        assert!(budget.hard <= budget.total);
        for bytes in [0, budget.soft, budget.prompt, budget.hard, u64::MAX] {
            let _ = budget.level(bytes);
        }
    }
    if let Some(budget) = round_trip::<ScopeBudget>(json) {
        assert!(budget.soft <= budget.hard && budget.hard > 0);
    }
    if let Some(sample) = round_trip::<Sample>(json) {
        let _ = format!("{sample:?}");
    }
    if let Some(status) = round_trip::<Status>(json) {
        let _ = status.to_string();
    }
    if let Some(reconciliation) = round_trip::<Reconciliation>(json) {
        let _ = reconciliation.to_string();
        let _ = reconciliation.gaps();
        let _ = reconciliation.remainder();
    }
    let _ = round_trip::<Event>(json);
    let _ = round_trip::<HistoryEntry>(json);
    let _ = round_trip::<SnapshotDiff>(json);
    let _ = round_trip::<SamplerStats>(json);
}
