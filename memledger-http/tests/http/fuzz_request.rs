//! The check of the `http_request` fuzz target (`fuzz/fuzz_targets/http_request.rs`), shared with
//! the test that replays its kept inputs (`kept_fuzz_inputs_pass_the_check` in `main.rs`): any
//! bytes as a request head either fail with an error or give a method and an absolute-path
//! target; any method, path and query either name a route or fail with a 4xx status, and a
//! route's query values stay inside their caps. Never a panic.

use memledger_http::__private::{param, parse_head};
use memledger_http::{QueryLimits, Route};

/// Panics where `data` breaks a guarantee.
pub fn check(data: &[u8]) {
    if let Ok(head) = parse_head(data) {
        assert!(head.uri.path().starts_with('/'), "{:?}", head.uri);
        check_route(&head.method, head.uri.path(), head.uri.query());
    }
    // The same bytes as a method, a path and a query, split at the first two NULs.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("/debug/pprof/heap");
    let query = parts.next();
    check_route(method, path, query);
    check_route("GET", "/debug/memledger/history", Some(&text));
    check_route("GET", "/debug/pprof/allocs", Some(&text));
    let _ = param(Some(&text), "since");
}

fn check_route(method: &str, path: &str, query: Option<&str>) {
    let limits = QueryLimits {
        max_seconds: 60,
        max_history: 100,
    };
    match Route::parse(method, path, query, limits) {
        Ok(Route::Heap { seconds }) | Ok(Route::Allocs { seconds }) => {
            assert!(seconds.is_none_or(|s| (1..=60).contains(&s)), "{seconds:?}");
        }
        Ok(Route::History { limit, .. }) => {
            assert!(limit.is_none_or(|l| (1..=100).contains(&l)), "{limit:?}");
        }
        Ok(_) => {}
        Err(e) => {
            assert!([400, 404, 405].contains(&e.status()));
            assert!(!e.to_string().is_empty());
        }
    }
}
