//! Runnable examples of memledger and the crates beside it, in `examples/`:
//!
//! - `demo`: a small code-indexing service, watched live, recorded and reported;
//! - `async_tasks`: futures that keep their scope across a multi-thread runtime;
//! - `measure`: two ways of building a word index, measured;
//! - `prometheus`: the books served to Prometheus;
//! - `record`: a run recorded to JSON Lines and turned into a page;
//! - `tracing_spans`: spans that book to scopes.
//!
//! Run one from the workspace root with `cargo run --release --example <name>`.

/// The workspace README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
