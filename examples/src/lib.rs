//! Runnable examples of memledger and the crates beside it, in `examples/`:
//!
//! - `demo`: a small code-indexing service, watched live, recorded and reported;
//! - `async_tasks`: futures that keep their scope across a multi-thread runtime;
//! - `measure`: two ways of building a word index, measured;
//! - `prometheus`: the books served to Prometheus;
//! - `record`: a run recorded to JSON Lines and turned into a page;
//! - `tracing_spans`: spans that book to scopes;
//! - `end_to_end` (with `end_to_end_bare` and `end_to_end_trailer`): serde_json, rayon and flate2
//!   over the default ledger, against bare jemalloc and the ledger with a trailer on every block.
//!
//! Run one from the workspace root with `cargo run --release --example <name>`.

/// A seeded xorshift generator, so that every run of an example builds the same data.
pub struct Rng(pub u64);

impl Rng {
    /// The next value. The seed must not be zero.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The workspace README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
