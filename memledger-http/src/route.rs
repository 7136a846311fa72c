//! Which endpoint a request names, and its query: parsed without allocating more than the
//! query's own length, and never panicking on any input (the `http_route` fuzz target).

use core::fmt;
use core::time::Duration;
use std::time::SystemTime;

/// The longest `?seconds=` window of a growth profile, unless [`EndpointsBuilder::max_seconds`]
/// sets another: Go's own handler is bounded by its server's write timeout instead.
///
/// [`EndpointsBuilder::max_seconds`]: crate::EndpointsBuilder::max_seconds
pub const DEFAULT_MAX_SECONDS: u64 = 60;

/// The most history entries one `/debug/memledger/history` answer holds, unless
/// [`EndpointsBuilder::max_history`](crate::EndpointsBuilder::max_history) sets another.
pub const DEFAULT_MAX_HISTORY: usize = 10_000;

/// An endpoint, with what its query asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/debug/pprof/heap`: the sampled sites as pprof, live bytes by default; over `seconds`
    /// (`?seconds=N`, 0 or absent for none), the growth by site over that window.
    Heap {
        /// The window of a growth profile, `None` for the sites as they are.
        seconds: Option<u64>,
    },
    /// `/debug/pprof/allocs`: the sampled sites as pprof, bytes allocated by default; over
    /// `seconds`, what was allocated in that window.
    Allocs {
        /// The window, `None` for everything since the program started.
        seconds: Option<u64>,
    },
    /// `/debug/pprof/`: a list of the pprof endpoints.
    PprofIndex,
    /// `/debug/memledger/`: the live page.
    Page,
    /// `/debug/memledger/snapshot`: the books now, as JSON.
    Snapshot,
    /// `/debug/memledger/status`: the last tick's budget status, as JSON.
    Status,
    /// `/debug/memledger/reconciliation`: the last tick's reconciliation, as JSON.
    Reconciliation,
    /// `/debug/memledger/history`: history entries, oldest first, as JSON.
    History {
        /// Only entries taken at or after this time (`?since=`).
        since: Option<Since>,
        /// At most this many entries, the newest (`?limit=`).
        limit: Option<usize>,
    },
    /// `/metrics`: the last tick in Prometheus's text format.
    Metrics,
}

/// Where a history query starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This long before the request (`since=90s`, `15m`, `2h`, `1d`, `500ms`).
    Ago(Duration),
    /// A time, as Unix seconds (`since=1735689600`, what `date +%s` prints).
    Unix(u64),
}

impl Since {
    /// The time this names, for a request made at `now`.
    pub fn at(self, now: SystemTime) -> SystemTime {
        match self {
            Since::Ago(d) => now.checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH),
            Since::Unix(secs) => SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(secs))
                .unwrap_or(now),
        }
    }
}

/// Why a request names no endpoint: each becomes a status and a message that says what to
/// send instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No endpoint at this path (404).
    NotFound(String),
    /// Not `GET` (405).
    Method(String),
    /// A query value this endpoint cannot read (400).
    BadQuery(String),
}

impl RouteError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            RouteError::NotFound(_) => 404,
            RouteError::Method(_) => 405,
            RouteError::BadQuery(_) => 400,
        }
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteError::NotFound(path) => write!(
                f,
                "no endpoint at {path:?}: try /debug/pprof/heap, /debug/pprof/allocs, \
                 /debug/memledger/ (the live page), /debug/memledger/snapshot, status, \
                 reconciliation, history, or /metrics"
            ),
            RouteError::Method(method) => {
                write!(
                    f,
                    "method {method:?} is not served: the endpoints answer GET only"
                )
            }
            RouteError::BadQuery(why) => f.write_str(why),
        }
    }
}

/// The limits a query is read against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// The longest `seconds=` (see [`DEFAULT_MAX_SECONDS`]).
    pub max_seconds: u64,
    /// The largest `limit=` (see [`DEFAULT_MAX_HISTORY`]).
    pub max_history: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            max_seconds: DEFAULT_MAX_SECONDS,
            max_history: DEFAULT_MAX_HISTORY,
        }
    }
}

impl Route {
    /// The endpoint `method` and `path` name, with `query` (the part after `?`, if any) read
    /// against `limits`. Keys an endpoint does not know are ignored, as Go's handlers ignore
    /// them; the first of repeated keys counts. Never panics.
    ///
    /// ```
    /// use memledger_http::{QueryLimits, Route};
    /// let limits = QueryLimits::default();
    /// let heap = Route::parse("GET", "/debug/pprof/heap", Some("seconds=30"), limits);
    /// assert_eq!(heap, Ok(Route::Heap { seconds: Some(30) }));
    /// let bad = Route::parse("GET", "/debug/pprof/heap", Some("seconds=abc"), limits);
    /// assert_eq!(bad.unwrap_err().status(), 400);
    /// ```
    pub fn parse(
        method: &str,
        path: &str,
        query: Option<&str>,
        limits: QueryLimits,
    ) -> Result<Route, RouteError> {
        let route = match path {
            "/debug/pprof/heap" => Route::Heap {
                seconds: seconds(query, limits)?,
            },
            "/debug/pprof/allocs" => Route::Allocs {
                seconds: seconds(query, limits)?,
            },
            "/debug/pprof" | "/debug/pprof/" => Route::PprofIndex,
            "/debug/memledger" | "/debug/memledger/" => Route::Page,
            "/debug/memledger/snapshot" => Route::Snapshot,
            "/debug/memledger/status" => Route::Status,
            "/debug/memledger/reconciliation" => Route::Reconciliation,
            "/debug/memledger/history" => {
                let since = match param(query, "since") {
                    None => None,
                    Some(v) => Some(parse_since(&v)?),
                };
                let limit = match param(query, "limit") {
                    None => None,
                    Some(v) => Some(parse_limit(&v, limits.max_history)?),
                };
                Route::History { since, limit }
            }
            "/metrics" => Route::Metrics,
            _ => return Err(RouteError::NotFound(truncated(path))),
        };
        // The path is known: only now is a wrong method the answer (a 404 says more otherwise).
        if method != "GET" {
            return Err(RouteError::Method(truncated(method)));
        }
        Ok(route)
    }
}

/// A client's text, cut to 100 bytes at a character boundary, for a message.
fn truncated(s: &str) -> String {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// `seconds=`: absent or 0 for none; digits up to the cap.
fn seconds(query: Option<&str>, limits: QueryLimits) -> Result<Option<u64>, RouteError> {
    let Some(value) = param(query, "seconds") else {
        return Ok(None);
    };
    let n = digits(&value).ok_or_else(|| {
        RouteError::BadQuery(format!(
            "seconds={:?} is not a whole number of seconds from 0 to {}",
            truncated(&value),
            limits.max_seconds
        ))
    })?;
    if n > limits.max_seconds {
        return Err(RouteError::BadQuery(format!(
            "seconds={n} is past the cap of {} s: ask for a shorter window",
            limits.max_seconds
        )));
    }
    Ok((n > 0).then_some(n))
}

/// `limit=`: 1 up to the cap.
fn parse_limit(value: &str, max: usize) -> Result<usize, RouteError> {
    match digits(value) {
        Some(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
        _ => Err(RouteError::BadQuery(format!(
            "limit={:?} is not a number of entries from 1 to {max}",
            truncated(value)
        ))),
    }
}

/// `since=`: a duration with its unit, or Unix seconds.
fn parse_since(value: &str) -> Result<Since, RouteError> {
    let bad = || {
        RouteError::BadQuery(format!(
            "since={:?} is neither a duration ago (90s, 15m, 2h, 1d, 500ms) nor Unix seconds",
            truncated(value)
        ))
    };
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let n = digits(number).ok_or_else(bad)?;
    let millis_per = match unit {
        "" => return Ok(Since::Unix(n)),
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let millis = n.checked_mul(millis_per).ok_or_else(bad)?;
    Ok(Since::Ago(Duration::from_millis(millis)))
}

/// A decimal number of at most 19 digits (so that it fits a `u64`), nothing else.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The first value of `key` in a query, percent-decoded (`+` is a space); malformed escapes
/// are kept as they are.
pub fn param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == key).then(|| decode(v))
    })
}

/// Percent-decoding of a query component.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str, query: &str) -> Result<Route, RouteError> {
        Route::parse("GET", path, Some(query), QueryLimits::default())
    }

    #[test]
    fn queries_are_read_or_refused_with_a_reason() {
        assert_eq!(
            parse("/debug/pprof/heap", "seconds=0"),
            Ok(Route::Heap { seconds: None })
        );
        assert_eq!(
            parse("/debug/pprof/allocs", "gc=1&seconds=%35"),
            Ok(Route::Allocs { seconds: Some(5) })
        );
        for bad in [
            "seconds=abc",
            "seconds=-1",
            "seconds=61",
            "seconds=",
            "seconds=1e3",
        ] {
            let err = parse("/debug/pprof/heap", bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
            assert!(err.to_string().contains("seconds="), "{err}");
        }
        let huge = parse("/debug/pprof/heap", "seconds=99999999999999999999999").unwrap_err();
        assert!(huge.to_string().contains("from 0 to 60"), "{huge}");
        assert_eq!(
            parse("/debug/memledger/history", "since=15m&limit=3"),
            Ok(Route::History {
                since: Some(Since::Ago(Duration::from_secs(900))),
                limit: Some(3)
            })
        );
        assert_eq!(
            parse("/debug/memledger/history", "since=1700000000"),
            Ok(Route::History {
                since: Some(Since::Unix(1_700_000_000)),
                limit: None
            })
        );
        for bad in [
            "since=5y",
            "since=-5m",
            "since=m",
            "limit=0",
            "limit=10001",
            "since=99999999999999999d",
        ] {
            assert_eq!(
                parse("/debug/memledger/history", bad).unwrap_err().status(),
                400,
                "{bad}"
            );
        }
        assert_eq!(parse("/nothing", "").unwrap_err().status(), 404);
        let post = Route::parse("POST", "/metrics", None, QueryLimits::default());
        assert_eq!(post.unwrap_err().status(), 405);
        assert_eq!(param(Some("a=%zz&b=%4"), "a").as_deref(), Some("%zz"));
        assert_eq!(param(Some("a=x&b=%4"), "b").as_deref(), Some("%4"));
        assert_eq!(param(Some("a+b=c+d"), "a b").as_deref(), Some("c d"));
    }
}
