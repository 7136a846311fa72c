//! Each endpoint's answer, through the server and through the handler, and the answers to bad
//! input.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memledger_monitor::{from_json, HistoryEntry, Reconciliation, Status};

use crate::{contains, fixture, get, gunzip, SCOPE};

#[test]
fn heap_is_gzipped_pprof_with_the_known_site_and_its_scope() {
    let addr = fixture().server.local_addr();
    let answer = get(addr, "/debug/pprof/heap");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    let raw = gunzip(&answer.body);
    for string in ["http_known_site", "live_bytes", "scope", SCOPE] {
        assert!(contains(&raw, string), "no {string:?} in the profile");
    }
    let allocs = gunzip(&get(addr, "/debug/pprof/allocs").body);
    assert!(contains(&allocs, "allocated_bytes") && contains(&allocs, "http_known_site"));
    assert!(get(addr, "/debug/pprof/")
        .text()
        .contains("/debug/pprof/heap?seconds=N"));
}

#[test]
fn a_window_shows_what_grew_in_it() {
    let f = fixture();
    let addr = f.server.local_addr();
    let grower = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        memledger::in_scope("http_window", window_site)
    });
    let started = Instant::now();
    let answer = get(addr, "/debug/pprof/heap?seconds=2");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the window was waited"
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    let raw = gunzip(&answer.body);
    assert!(contains(&raw, "growth_bytes"), "the growth sample type");
    assert!(
        contains(&raw, "window_site"),
        "the site that grew in the window"
    );
    drop(grower.join().unwrap());
}

#[inline(never)]
fn window_site() -> Vec<Vec<u8>> {
    (0..1024)
        .map(|_| std::hint::black_box(vec![1u8; 8 * 1024]))
        .collect()
}

#[test]
fn json_endpoints_read_back_as_the_monitors_types() {
    let f = fixture();
    let addr = f.server.local_addr();
    let snapshot = get(addr, "/debug/memledger/snapshot");
    assert_eq!(snapshot.status, 200);
    assert_eq!(
        snapshot.header("content-type").as_deref(),
        Some("application/json")
    );
    let snapshot: memledger::Snapshot = from_json(&snapshot.text()).unwrap();
    assert!(snapshot.scope(SCOPE).unwrap().live_bytes >= 16 << 20);

    let status: Status = from_json(&get(addr, "/debug/memledger/status").text()).unwrap();
    assert!(status.current_bytes > 0);
    let reconciliation: Reconciliation =
        from_json(&get(addr, "/debug/memledger/reconciliation").text()).unwrap();
    assert!(reconciliation.ledger_bytes >= 16 << 20);

    let history: Vec<HistoryEntry> =
        from_json(&get(addr, "/debug/memledger/history?limit=3").text()).unwrap();
    assert!(
        !history.is_empty() && history.len() <= 3,
        "{}",
        history.len()
    );
    assert!(
        history.windows(2).all(|w| w[0].at <= w[1].at),
        "oldest first"
    );
    assert!(history.iter().all(|e| e.live_bytes(SCOPE) >= 16 << 20));
    let recent: Vec<HistoryEntry> =
        from_json(&get(addr, "/debug/memledger/history?since=1h").text()).unwrap();
    assert!(recent.len() >= history.len());
    let future = format!(
        "/debug/memledger/history?since={}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600
    );
    let none: Vec<HistoryEntry> = from_json(&get(addr, &future).text()).unwrap();
    assert!(none.is_empty(), "nothing after an hour from now");
}

#[test]
fn bad_input_gets_a_status_that_says_why() {
    let addr = fixture().server.local_addr();
    for (path, status, says) in [
        ("/nothing", 404, "no endpoint"),
        ("/debug/pprof/heap?seconds=abc", 400, "seconds="),
        ("/debug/pprof/heap?seconds=-5", 400, "seconds="),
        ("/debug/pprof/heap?seconds=100000", 400, "cap of 60 s"),
        (
            "/debug/pprof/allocs?seconds=99999999999999999999999",
            400,
            "from 0 to 60",
        ),
        ("/debug/memledger/history?since=yesterday", 400, "since="),
        ("/debug/memledger/history?limit=0", 400, "limit="),
        ("/debug/memledger/history?limit=1000000", 400, "limit="),
    ] {
        let answer = get(addr, path);
        assert_eq!(answer.status, status, "{path}: {}", answer.text());
        assert!(answer.text().contains(says), "{path}: {}", answer.text());
        assert!(answer
            .header("content-type")
            .unwrap()
            .starts_with("text/plain"));
    }
    let post = crate::send(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow").as_deref(), Some("GET"));
}

#[test]
fn the_handler_answers_like_the_server() {
    let f = fixture();
    let endpoints = memledger_http::Endpoints::new(Arc::clone(&f.sampler));
    let request = |uri: &str| http::Request::get(uri).body(()).unwrap();
    let metrics = endpoints.handle(&request("/metrics"));
    assert_eq!(metrics.status(), 200);
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(endpoints.handle(&request("/debug/x")).status(), 404);
    let head = http::Request::head("/metrics").body(()).unwrap();
    assert_eq!(endpoints.handle(&head).status(), 405);
    // The endpoints' own memory is the monitoring's.
    let before = memledger::snapshot();
    let user = before.scope(SCOPE).map(|s| s.allocations);
    for _ in 0..20 {
        endpoints.handle(&request("/debug/memledger/snapshot"));
    }
    let after = memledger::snapshot();
    assert_eq!(after.scope(SCOPE).map(|s| s.allocations), user);
}

#[test]
fn a_profile_is_resolved_once_per_interval_and_shared() {
    let f = fixture();
    let endpoints = memledger_http::Endpoints::builder(Arc::clone(&f.sampler))
        .profile_interval(Duration::from_secs(3600))
        .build();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let endpoints = endpoints.clone();
            std::thread::spawn(move || {
                let request = http::Request::get("/debug/pprof/heap").body(()).unwrap();
                endpoints.handle(&request).into_body()
            })
        })
        .collect();
    let bodies: HashSet<Vec<u8>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(bodies.len(), 1, "every request got the one profile");
    let allocs = http::Request::get("/debug/pprof/allocs").body(()).unwrap();
    assert_eq!(endpoints.handle(&allocs).status(), 200);
    assert_eq!(endpoints.stats().profiles_resolved, 1);
    assert_eq!(endpoints.stats().requests, 7);
}

#[test]
fn the_page_is_the_reports_page_live() {
    let f = fixture();
    let answer = get(f.server.local_addr(), "/debug/memledger/");
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let html = answer.text();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("connect-src 'self'"));
    assert!(html.contains("window.__memledgerRefreshMs = 300;"));
    assert!(html.contains(SCOPE), "the scope is drawn");
    assert!(
        html.contains("http_known_site"),
        "its site is in the flame graph"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external asset"
    );
}

/// One line of the Prometheus text format, read strictly.
fn check_line(line: &str, families: &mut Vec<String>, typed: &mut HashSet<String>) {
    fn is_name(s: &str, colon: bool) -> bool {
        let mut chars = s.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    if let Some(rest) = line.strip_prefix("# HELP ") {
        let (name, help) = rest.split_once(' ').expect("HELP name text");
        assert!(is_name(name, true), "{line}");
        assert!(!help.contains('\n'));
        assert!(
            families.last() != Some(&name.to_string()) || !typed.contains(name),
            "{line}"
        );
        if families.last() != Some(&name.to_string()) {
            assert!(
                !families.contains(&name.to_string()),
                "{name} is split: {line}"
            );
            families.push(name.to_string());
        }
        return;
    }
    if let Some(rest) = line.strip_prefix("# TYPE ") {
        let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
        assert!(["gauge", "counter"].contains(&kind), "{line}");
        assert_eq!(
            families.last(),
            Some(&name.to_string()),
            "TYPE after its HELP: {line}"
        );
        assert!(
            typed.insert(name.to_string()),
            "one TYPE per family: {line}"
        );
        return;
    }
    assert!(!line.starts_with('#'), "{line}");
    let (series, value) = line.rsplit_once(' ').expect("series value");
    assert!(
        value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
        "{line}"
    );
    let name = series.split('{').next().unwrap();
    assert!(is_name(name, true), "{line}");
    assert_eq!(
        families.last(),
        Some(&name.to_string()),
        "in its family: {line}"
    );
    assert!(typed.contains(name), "typed first: {line}");
    if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
        let mut rest = labels
            .strip_prefix('{')
            .and_then(|l| l.strip_suffix('}'))
            .unwrap_or_else(|| panic!("braces: {line}"));
        while !rest.is_empty() {
            let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
            assert!(is_name(key, false), "{line}");
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => {
                        let escaped = chars.next().map(|(_, c)| c);
                        assert!(matches!(escaped, Some('\\' | '"' | 'n')), "{line}");
                    }
                    Some((i, '"')) => break i,
                    Some(_) => {}
                    None => panic!("unterminated label value: {line}"),
                }
            };
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
}

#[test]
fn metrics_are_strict_prometheus_text() {
    let f = fixture();
    memledger::in_scope("quote\"and\\backslash", || drop(black_box(vec![0u8; 100])));
    f.sampler.sample_now();
    let answer = get(f.server.local_addr(), "/metrics");
    assert_eq!(answer.status, 200);
    let text = answer.text();
    assert!(text.ends_with('\n'));
    let (mut families, mut typed) = (Vec::new(), HashSet::new());
    for line in text.lines() {
        check_line(line, &mut families, &mut typed);
    }
    assert!(families.len() >= 10, "{families:?}");
    assert!(text.contains(&format!("memledger_scope_live_bytes{{scope=\"{SCOPE}\"}} ")));
    assert!(
        text.contains("scope=\"quote\\\"and\\\\backslash\""),
        "escaped:\n{text}"
    );
}

#[test]
fn the_monitor_source_follows_whichever_monitor_runs() {
    let endpoints = memledger_http::Endpoints::monitor_builder().build();
    let request = |uri: &str| http::Request::get(uri).body(()).unwrap();
    let before = endpoints.handle(&request("/metrics"));
    assert_eq!(before.status(), 503, "no monitor, no tick");
    assert!(String::from_utf8_lossy(before.body()).contains("not ticked"));
    memledger_monitor::monitor::start(memledger_monitor::Sampler::builder()).unwrap();
    memledger_monitor::monitor::with(|s| s.sample_now());
    assert_eq!(
        endpoints
            .handle(&request("/debug/memledger/status"))
            .status(),
        200
    );
    assert_eq!(
        endpoints.handle(&request("/debug/memledger/")).status(),
        200
    );
    assert!(memledger_monitor::monitor::stop());
    // A new monitor: the page subscribes to it.
    memledger_monitor::monitor::start(memledger_monitor::Sampler::builder()).unwrap();
    memledger_monitor::monitor::with(|s| s.sample_now());
    assert_eq!(
        endpoints.handle(&request("/debug/memledger/")).status(),
        200
    );
    assert!(memledger_monitor::monitor::stop());
}
