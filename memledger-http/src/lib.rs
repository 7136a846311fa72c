//! memledger's books over HTTP: a pprof-compatible heap endpoint, JSON of the books, a live
//! page and Prometheus metrics, for a running service watched from outside.
//!
//! [`Endpoints`] is a function from an [`http::Request`] to an [`http::Response`], for any
//! server's router; [`serve`] runs them on a small server of their own for programs without
//! one. Nothing listens unless the program starts a [`Server`], and only on loopback unless it
//! says otherwise.
//!
//! # Endpoints
//!
//! | path | answer | what it costs the program (measured: `BENCHMARKS.md`, "HTTP endpoints") |
//! |---|---|---|
//! | `/debug/pprof/heap` | the sampled allocation sites as gzipped pprof `profile.proto`, default sample type `live_bytes`, the scope as the label `scope` | one profile resolved at most once per [`profile_interval`](EndpointsBuilder::profile_interval) (10 s) and shared; its encoding made once per profile |
//! | `/debug/pprof/heap?seconds=N` | the growth by site over the next `N` seconds (default sample type `growth_bytes`; `allocated_bytes` is what was allocated in the window), as Go's delta profiles | holds a thread `N` s (at most 60, [`max_seconds`](EndpointsBuilder::max_seconds)); at most 2 at once ([`max_windows`](EndpointsBuilder::max_windows)), more get 503 |
//! | `/debug/pprof/allocs`, `?seconds=N` | the same profile with `allocated_bytes` (since the start, or over the window) as the default sample type | as above |
//! | `/debug/memledger/` | the live page: `memledger-report`'s page drawn from the newest ticks (300), refetched in place every 2 s | one render per new tick, shared |
//! | `/debug/memledger/snapshot` | `memledger::snapshot()` now, as JSON | a snapshot (~0.1 µs per scope) |
//! | `/debug/memledger/status` | the last tick's [`Status`](memledger_monitor::Status), as JSON | a copy of the last tick's |
//! | `/debug/memledger/reconciliation` | the last tick's [`Reconciliation`](memledger_monitor::Reconciliation), as JSON (503 if its reading failed) | as above |
//! | `/debug/memledger/history?since=&limit=` | [`HistoryEntry`](memledger_monitor::HistoryEntry)s, oldest first, as JSON: the newest `limit` (at most 10 000), those since `since` (`90s`, `15m`, `2h`, `1d`, `500ms` ago, or Unix seconds) | at most `limit` entries expanded |
//! | `/metrics` | the last tick in Prometheus's text format, the metrics of `memledger-metrics` ([`render_prometheus`](memledger_metrics::render_prometheus)) | one rendering of the last tick |
//!
//! On a 2-vCPU Xeon (`cargo run --release -p memledger-http --example load`, figures and
//! conditions in `BENCHMARKS.md`), one request cost the program 3–7 µs for the JSON of the last
//! tick or a snapshot, 34 µs for `/metrics`, 0.4 µs for a shared pprof profile, 0.15 ms for 60
//! history entries; a profile's resolution 0.1 ms (the first in a process 0.14–0.19 s, reading
//! the debug information) and a page's drawing 0.7 ms, each at most once per interval or tick.
//! The idle server used no CPU time over 3 s.
//!
//! JSON answers are the monitor's serde types and read back with `memledger_monitor::from_json`.
//! The endpoints that need a tick answer 503 until the sampler's first.
//!
//! **What they reveal**: function names, source files and lines (the pprof endpoints and the
//! page), scope names, and memory figures of the process, its allocator and its cgroup. Keep
//! them on loopback or behind authentication.
//!
//! # Bad input
//!
//! Every answer is a status, never a panic or a hang: an unknown path is 404, a method other
//! than `GET` 405, a query value that cannot be read (`seconds=abc`, `-1`, past the cap) 400
//! with a message that says what is accepted; keys an endpoint does not know are ignored, as
//! Go's handlers do. The [`Server`] also answers a head over 8 KiB or 32 headers with 431, a
//! request with a body 413, a head not sent within 5 s (a client that connects and sends
//! nothing) 408, and a request without the bearer token 401.
//!
//! # The server
//!
//! [`serve`] binds `127.0.0.1` (or any loopback address); another address needs
//! [`ServerBuilder::allow_remote`], and [`ServerBuilder::bearer_token`] makes every request show
//! `Authorization: Bearer <token>`. One thread accepts and 4 workers answer, one connection each
//! at a time, one request per connection (`Connection: close`); 16 more connections wait in a
//! queue and past that a connection is answered 503 at once. So at most 20 connections are held
//! and 4 answered at once; a request's head is bounded in size and in time, and the work behind
//! each endpoint is bounded as the table says. A slow or hostile client holds one worker for at
//! most the read timeout (5 s) and the write timeout (10 s); the sampler and the program's own
//! threads never wait for the server. The idle server's threads sleep in `accept` and in a
//! channel's `recv`: no timer, no polling. [`Server::stop`], or dropping the [`Server`], stops it
//! and joins its threads.
//!
//! The server is `std::net` with `httparse` (the request parser of hyper, small, without
//! dependencies, fuzzed upstream), not a server crate: `tiny_http`, the small one, starts a
//! thread for every connection without a bound, sets no read timeout, and does not join its
//! threads when dropped, which are the three things a debug endpoint inside a service must not
//! do; hyper needs an async runtime. A program that has a server mounts [`Endpoints`] in it
//! instead.
//!
//! What the endpoints and the server allocate is booked to `<memledger>`, like the rest of the
//! monitoring.
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let sampler = Arc::new(memledger_monitor::Sampler::builder().start()?);
//! let server = memledger_http::serve(Arc::clone(&sampler), "127.0.0.1:0".parse()?)?;
//! println!("go tool pprof http://{}/debug/pprof/heap", server.local_addr());
//! // ...
//! server.stop();
//! # Ok(())
//! # }
//! ```
//!
//! In an axum router (`examples/axum.rs`), with the blocking call off the reactor:
//!
//! ```ignore
//! let endpoints = memledger_http::Endpoints::new(sampler);
//! let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
//!     let endpoints = endpoints.clone();
//!     async move {
//!         let response = tokio::task::spawn_blocking(move || endpoints.handle(&request)).await;
//!         response.map_or_else(
//!             |_| http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
//!             |r| r.map(axum::body::Body::from).into_response(),
//!         )
//!     }
//! });
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod endpoints;
mod route;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;

pub use crate::endpoints::{
    EndpointStats, Endpoints, EndpointsBuilder, DEFAULT_MAX_WINDOWS, DEFAULT_PAGE_REFRESH,
    DEFAULT_PAGE_SAMPLES, DEFAULT_PROFILE_INTERVAL,
};
pub use crate::route::{
    QueryLimits, Route, RouteError, Since, DEFAULT_MAX_HISTORY, DEFAULT_MAX_SECONDS,
};
pub use crate::server::{
    Error, Server, ServerBuilder, ServerStats, DEFAULT_QUEUE, DEFAULT_READ_TIMEOUT,
    DEFAULT_WORKERS, DEFAULT_WRITE_TIMEOUT, MAX_HEADERS, MAX_HEAD_BYTES,
};

/// Serves `sampler`'s endpoints on `addr` with the defaults, on threads of their own, until
/// the [`Server`] is stopped or dropped. `addr` must be a loopback address (see
/// [`serve_builder`] for another).
pub fn serve(sampler: Arc<memledger_monitor::Sampler>, addr: SocketAddr) -> Result<Server, Error> {
    serve_builder(sampler).addr(addr).start()
}

/// A server of `sampler`'s endpoints with the defaults, to configure before
/// [`start`](ServerBuilder::start): `Endpoints::new(sampler).server()`.
pub fn serve_builder(sampler: Arc<memledger_monitor::Sampler>) -> ServerBuilder {
    Endpoints::new(sampler).server()
}

/// Not public API: the request parsing the fuzz target drives.
#[doc(hidden)]
pub mod __private {
    pub use crate::route::param;
    pub use crate::server::{parse_head, Head, HeadError};
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
