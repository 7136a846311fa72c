//! JSON round trips of everything the sampler produces, and malformed input.

use std::time::Duration;

#[path = "common/fuzz_json.rs"]
mod fuzz_json;
#[path = "../../memledger/tests/regressions/replay.rs"]
mod replay;

use memledger::{ScopeStats, Snapshot};
use memledger_monitor::{
    from_json, to_json, Budget, Event, HistoryEntry, Reconciliation, Sample, Sampler, ScopeBudget,
    Status,
};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

fn round_trip<T>(value: &T) -> String
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = to_json(value).unwrap();
    let back: T = from_json(&json).unwrap();
    assert_eq!(&back, value, "{json}");
    // And the same text again: nothing was lost or reordered.
    assert_eq!(to_json(&back).unwrap(), json);
    json
}

/// A sample from a real sampler, with a scope budget, a growing scope and a read failure in the
/// history, so that every optional part is present.
fn a_full_sample() -> (Sampler, std::sync::Arc<Sample>) {
    // Sampled often, so that a profile of the growing scope comes with the sample.
    memledger::sampling::set_rate(memledger::sampling::MIN_RATE).unwrap();
    let mut first = true;
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(2))
        .profile_every(Duration::from_millis(2))
        .budget(Budget::builder().total(1 << 40).build().unwrap())
        .scope_budget("json/index", ScopeBudget::new(10, 1 << 30).unwrap())
        .memory_source(move || {
            if std::mem::take(&mut first) {
                Err(memledger_monitor::ReadError::Io {
                    source: "test".to_string(),
                    message: "injected \"failure\" \u{1F4A5}".to_string(),
                })
            } else {
                memledger_monitor::ProcessMemory::read()
            }
        })
        .start()
        .unwrap();
    let events = sampler.subscribe();
    let mut held = Vec::new();
    loop {
        held.push(memledger::in_scope("json/index", || vec![3u8; 10_000]));
        if let Some(Event::Sample(s)) = events.recv_timeout(Duration::from_secs(10)) {
            let growing = s
                .scope_growth
                .iter()
                .any(|(p, g)| p == "json/index" && g.window > 0.0);
            let profiled = s
                .profile
                .as_ref()
                .is_some_and(|p| p.scope("json/index").is_some());
            if s.reconciliation.is_ok()
                && growing
                && profiled
                && !s.status.recommendations.is_empty()
            {
                std::mem::forget(held);
                return (sampler, s);
            }
        }
    }
}

#[test]
fn everything_round_trips_losslessly() {
    let (sampler, sample) = a_full_sample();
    round_trip(&*sample);
    round_trip(&sample.snapshot);
    round_trip(sample.snapshot.scope("json/index").unwrap());
    let profile = sample.profile.as_deref().unwrap();
    assert!(profile.scope("json/index").unwrap().sites[0]
        .frames
        .iter()
        .any(|f| f.line.is_some()));
    round_trip(profile);
    let reconciliation: &Reconciliation = sample.reconciliation.as_ref().unwrap();
    round_trip(reconciliation);
    let status: &Status = &sample.status;
    assert!(!status.scopes.is_empty() && !status.breakdown.is_empty());
    round_trip(status);
    let history: Vec<HistoryEntry> = sampler.history_last(usize::MAX);
    assert!(history.iter().any(|e| e.read_error.is_some()));
    round_trip(&history);
    round_trip(&sampler.stats());
    let diff = memledger::snapshot().diff(&sample.snapshot);
    round_trip(&diff);
    // Floats come back bit for bit.
    for (_, rate) in &sample.scope_growth {
        let back: memledger_monitor::GrowthRate = from_json(&to_json(rate).unwrap()).unwrap();
        assert_eq!(back.window.to_bits(), rate.window.to_bits());
        assert_eq!(back.fit.to_bits(), rate.fit.to_bits());
    }
    sampler.stop();
}

#[test]
fn malformed_input_is_an_error_never_a_panic() {
    let (sampler, sample) = a_full_sample();
    sampler.stop();
    // The profile alone is checked below: every prefix of the whole sample with it would take
    // too long.
    let mut without_profile = (*sample).clone();
    let mut profile = without_profile.profile.take().unwrap();
    let json = to_json(&without_profile).unwrap();
    // A small profile: its first scope's first three sites.
    let small = std::sync::Arc::make_mut(&mut profile);
    small.scopes.truncate(1);
    small.scopes[0].sites.truncate(3);
    let small = from_json::<memledger_monitor::Profile>(&{
        let mut v: serde_json::Value = serde_json::from_str(&to_json(&*small).unwrap()).unwrap();
        let live: u64 = small.scopes[0].sites.iter().map(|s| s.live.bytes).sum();
        v["scopes"][0]["live"]["bytes"] = serde_json::json!(live);
        v.to_string()
    })
    .unwrap();
    let profile_json = to_json(&small).unwrap();
    for end in (0..profile_json.len()).filter(|&i| profile_json.is_char_boundary(i)) {
        assert!(from_json::<memledger_monitor::Profile>(&profile_json[..end]).is_err());
    }
    // Every prefix of a valid document, and every document with one byte changed.
    for end in (0..json.len()).filter(|&i| json.is_char_boundary(i)) {
        assert!(from_json::<Sample>(&json[..end]).is_err());
    }
    let mut x: u64 = 0x2545F4914F6CDD1D;
    for _ in 0..3000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut bytes = json.clone().into_bytes();
        let at = (x % bytes.len() as u64) as usize;
        let alphabet = b"{}[]\",:0-9eEtrufalsn \\x";
        bytes[at] = alphabet[(x >> 32) as usize % alphabet.len()];
        if let Ok(text) = String::from_utf8(bytes) {
            let _ = from_json::<Sample>(&text);
            if let Ok(snapshot) = from_json::<Snapshot>(&text) {
                // What passes the checks is safe to use.
                let _ = (snapshot.to_string(), snapshot.subtree(""), snapshot.own());
                for scope in snapshot.scopes() {
                    let _ = (
                        snapshot.parent(&scope.path),
                        snapshot.children(&scope.path).count(),
                    );
                }
            }
            let _ = from_json::<Status>(&text);
        }
    }
    let err = from_json::<ScopeStats>("{\"path\": 3}").unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn an_inconsistent_profile_is_rejected_with_its_reason() {
    let (sampler, sample) = a_full_sample();
    sampler.stop();
    let json = to_json(sample.profile.as_deref().unwrap()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();

    let mut wrong_sum = value.clone();
    wrong_sum["scopes"][0]["live"]["bytes"] = serde_json::json!(1);
    let err = from_json::<memledger_monitor::Profile>(&wrong_sum.to_string()).unwrap_err();
    assert!(err.to_string().contains("its sites add up to"), "{err}");

    let mut twice = value.clone();
    let first = twice["scopes"][0].clone();
    twice["scopes"].as_array_mut().unwrap().push(first);
    let err = from_json::<memledger_monitor::Profile>(&twice.to_string()).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");

    // Inside a sample too, where the sample's reading names it.
    let mut in_sample: serde_json::Value =
        serde_json::from_str(&to_json(&*sample).unwrap()).unwrap();
    in_sample["profile"]["scopes"][0]["live"]["bytes"] = serde_json::json!(1);
    let err = from_json::<Sample>(&in_sample.to_string()).unwrap_err();
    assert!(err.to_string().contains("its sites add up to"), "{err}");
}

#[test]
fn an_inconsistent_snapshot_is_rejected_with_its_reason() {
    let snapshot = memledger::in_scope("json_tree/child", memledger::snapshot);
    let json = to_json(&snapshot).unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let parents = value["parents"].as_array_mut().unwrap();
    let last = parents.len() - 1;
    // A scope that is its own parent.
    parents[last] = serde_json::json!(last);
    let err = from_json::<Snapshot>(&value.to_string()).unwrap_err();
    assert!(
        err.to_string()
            .contains("parents come before their children"),
        "{err}"
    );
    // One parent too few.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    value["parents"].as_array_mut().unwrap().pop();
    let err = from_json::<Snapshot>(&value.to_string()).unwrap_err();
    assert!(err.to_string().contains("one parent per scope"), "{err}");
    // A path that its name and parent contradict.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let scopes = value["scopes"].as_array_mut().unwrap();
    let child = scopes
        .iter_mut()
        .find(|s| s["path"] == "json_tree/child")
        .unwrap();
    child["path"] = serde_json::json!("elsewhere/child");
    let err = from_json::<Snapshot>(&value.to_string()).unwrap_err();
    assert!(
        err.to_string().contains("its name and parent make it"),
        "{err}"
    );
    // No root.
    let err = from_json::<Snapshot>(
        r#"{"scopes":[],"parents":[],"refused_scopes":0,"threads":0,"thread_slabs":0}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unscoped root"), "{err}");
    // Clamped scopes: listed ones round-trip, and each must be a scope that shows zero.
    let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let empty = value["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["live_bytes"] == 0)
        .expect("a scope with no live bytes");
    value["clamped"] = serde_json::json!([empty]);
    let back = from_json::<Snapshot>(&value.to_string()).unwrap();
    assert_eq!(back.clamped_scopes().count(), 1);
    assert!(back.to_string().contains("read below zero"), "{back}");
    assert_eq!(
        from_json::<Snapshot>(&to_json(&back).unwrap()).unwrap(),
        back
    );
    let scopes = value["scopes"].as_array().unwrap().len();
    value["clamped"] = serde_json::json!([scopes]);
    let err = from_json::<Snapshot>(&value.to_string()).unwrap_err();
    assert!(err.to_string().contains("is not one of the"), "{err}");
    let held = value["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["live_bytes"] != 0)
        .expect("a scope with live bytes");
    value["clamped"] = serde_json::json!([held]);
    let err = from_json::<Snapshot>(&value.to_string()).unwrap_err();
    assert!(err.to_string().contains("listed as clamped"), "{err}");
}

/// Budgets read back from JSON keep the guarantees of built ones: misordered limits, a hard
/// limit past the total and a zero total are errors that name what clashes.
#[test]
fn budgets_read_from_json_are_checked() {
    let good = Budget::builder().total(1000).build().unwrap();
    let back: Budget =
        memledger_monitor::from_json(&memledger_monitor::to_json(&good).unwrap()).unwrap();
    assert_eq!(back, good);
    for (json, says) in [
        (
            r#"{"total":100,"soft":90,"prompt":80,"hard":95}"#,
            "soft limit (90 bytes) is above the prompt",
        ),
        (r#"{"total":100,"soft":10,"prompt":20,"hard":200}"#, "hard"),
        (r#"{"total":0,"soft":0,"prompt":0,"hard":0}"#, "zero"),
    ] {
        let err = memledger_monitor::from_json::<Budget>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{json}: {err}");
    }
    let err = memledger_monitor::from_json::<ScopeBudget>(r#"{"soft":9,"hard":5,"enforce":true}"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("soft"), "{err}");
    let enforced: ScopeBudget =
        memledger_monitor::from_json(r#"{"soft":5,"hard":9,"enforce":true}"#).unwrap();
    assert_eq!(enforced, ScopeBudget::new(5, 9).unwrap().enforced());
}

/// The `json` fuzz target's check over its kept inputs: its seeds (`fuzz/seeds/json`) and
/// the inputs that once failed it (`memledger/tests/regressions/json`; every file there but
/// the README). A file that fails the check fails the test, by name.
#[test]
fn kept_fuzz_inputs_pass_the_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    replay::replay(&root, "json", fuzz_json::check);
}
