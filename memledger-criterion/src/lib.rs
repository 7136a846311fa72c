//! criterion measurements of memory from memledger's books: bytes allocated, or the peak, per
//! iteration of a benchmarked routine.
//!
//! criterion measures wall time by default; a group built with [`Allocated`] or [`Peak`] reports
//! bytes instead, so `cargo bench` compares how much memory two ways of building a component cost
//! and catches a change that makes one hungrier.
//!
//! - [`Allocated`] counts the bytes the routine brings in (allocations plus realloc growth), per
//!   iteration, in one scope and its descendants or in the whole program.
//! - [`Peak`] measures how far a scope's live bytes rise above where they started. A peak does not
//!   add up over iterations, so run it through [`Peak::iter`] in `iter_custom`, which restarts
//!   the peak for every iteration and sums the peaks.
//!
//! ```no_run
//! use criterion::{criterion_group, criterion_main, Criterion};
//! use memledger_criterion::{Allocated, Peak};
//!
//! #[global_allocator]
//! static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
//!
//! fn build() -> Vec<String> {
//!     let _g = memledger::scope!("index");
//!     (0..1000).map(|i| format!("symbol_{i}")).collect()
//! }
//!
//! fn allocated(c: &mut Criterion<Allocated>) {
//!     c.bench_function("build", |b| b.iter(build));
//! }
//!
//! fn peak(c: &mut Criterion<Peak>) {
//!     c.bench_function("build", |b| b.iter_custom(|iters| Peak::scope("index").iter(iters, build)));
//! }
//!
//! criterion_group!(
//!     name = by_allocated;
//!     config = Criterion::default().with_measurement(Allocated::scope("index"));
//!     targets = allocated
//! );
//! criterion_group!(
//!     name = by_peak;
//!     config = Criterion::default().with_measurement(Peak::scope("index"));
//!     targets = peak
//! );
//! criterion_main!(by_allocated, by_peak);
//! ```
//!
//! Both read the books with [`memledger::snapshot`], outside the timed loop; the figures are exact
//! when the routine's threads are joined by the end of each sample, and [`Peak`] is exact when only
//! the benchmark's thread books to the scope (see [`measure`](memledger::measure) for what a
//! restarted peak means otherwise). [`Peak`] restarts the scope's peak, which samplers and
//! snapshots see too.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use ::criterion::measurement::{Measurement, ValueFormatter};
use ::criterion::Throughput;

use memledger::__private::{in_subtree, normalize, restart_peak};
use memledger::snapshot;

/// Which scopes a measurement reads.
#[derive(Clone, Debug)]
enum Target {
    /// Every scope but the crate's own.
    All,
    /// A scope and its descendants, by path.
    Scope(String),
}

impl Target {
    /// Bytes brought into the target so far, and its live bytes.
    fn read(&self) -> (u64, u64) {
        let snap = snapshot();
        match self {
            Target::All => snap
                .scopes()
                .iter()
                .filter(|s| s.path != memledger::OWN_SCOPE)
                .fold((0, 0), |(a, l), s| {
                    (a + s.allocated_bytes, l + s.live_bytes)
                }),
            Target::Scope(path) => snap
                .scopes()
                .iter()
                .filter(|s| in_subtree(&s.path, path))
                .fold((0, 0), |(a, l), s| {
                    (a + s.allocated_bytes, l + s.live_bytes)
                }),
        }
    }
}

/// The parts of [`Measurement`] that a count of bytes shares: values add up, and show as bytes.
macro_rules! bytes_value {
    () => {
        fn add(&self, v1: &u64, v2: &u64) -> u64 {
            v1.saturating_add(*v2)
        }

        fn zero(&self) -> u64 {
            0
        }

        fn to_f64(&self, value: &u64) -> f64 {
            *value as f64
        }

        fn formatter(&self) -> &dyn ValueFormatter {
            &BytesFormatter
        }
    };
}

/// Bytes allocated per iteration: allocations plus realloc growth, in a scope and its
/// descendants or in the whole program.
#[derive(Clone, Debug)]
pub struct Allocated {
    target: Target,
}

impl Allocated {
    /// Bytes allocated in every scope (the crate's own excepted), on every thread.
    pub fn total() -> Allocated {
        Allocated {
            target: Target::All,
        }
    }

    /// Bytes allocated in the scope at `path` (absolute) and its descendants.
    pub fn scope(path: &str) -> Allocated {
        Allocated {
            target: Target::Scope(normalize(path)),
        }
    }
}

impl Measurement for Allocated {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        self.target.read().0
    }

    fn end(&self, start: u64) -> u64 {
        self.target.read().0.wrapping_sub(start)
    }

    bytes_value!();
}

/// The peak of a scope's live bytes above where they started, per iteration.
///
/// With `b.iter`, criterion would divide one peak over many iterations by their number; use
/// [`Peak::iter`] in `iter_custom` instead, which measures every iteration's peak.
#[derive(Clone, Debug)]
pub struct Peak {
    path: String,
}

impl Peak {
    /// The peak of the scope at `path` (absolute). Nested scopes have peaks of their own and are
    /// not included.
    ///
    /// Puts the scope in exact mode ([`memledger::ScopeHandle::set_exact`]), so that its peak is
    /// exact rather than within the books' 64 KiB resolution per thread; its bookings then take
    /// the books' cold path, which the time measurements of the same scope would show.
    pub fn scope(path: &str) -> Peak {
        let path = normalize(path);
        memledger::ScopeHandle::at(&path).set_exact(true);
        Peak { path }
    }

    /// Restarts the scope's peak; returns its live bytes.
    fn restart(&self) -> u64 {
        let handle = memledger::ScopeHandle::at(&self.path);
        restart_peak(handle);
        self.read().1
    }

    /// The scope's peak and live bytes.
    fn read(&self) -> (u64, u64) {
        let snap = snapshot();
        snap.scope(&self.path)
            .map_or((0, 0), |s| (s.peak_bytes, s.live_bytes))
    }

    /// Runs `routine` `iters` times, each with the peak restarted, and returns the sum of the
    /// peaks above the live bytes at each start: criterion divides it by `iters`. For
    /// `b.iter_custom(|iters| peak.iter(iters, || build()))`. The routine's result is dropped
    /// after its peak is read.
    pub fn iter<R>(&self, iters: u64, mut routine: impl FnMut() -> R) -> u64 {
        let mut sum = 0u64;
        for _ in 0..iters {
            let start = self.restart();
            let output = std::hint::black_box(routine());
            sum += self.read().0.saturating_sub(start);
            drop(output);
        }
        sum
    }
}

impl Measurement for Peak {
    type Intermediate = u64;
    type Value = u64;

    /// Restarts the peak.
    fn start(&self) -> u64 {
        self.restart()
    }

    /// The peak above the start, over the whole sample (all its iterations).
    fn end(&self, start: u64) -> u64 {
        self.read().0.saturating_sub(start)
    }

    bytes_value!();
}

/// Shows bytes as B, KiB, MiB or GiB.
struct BytesFormatter;

impl BytesFormatter {
    fn unit(typical: f64) -> (f64, &'static str) {
        match typical.abs() {
            v if v >= (1u64 << 30) as f64 => ((1u64 << 30) as f64, "GiB"),
            v if v >= (1u64 << 20) as f64 => ((1u64 << 20) as f64, "MiB"),
            v if v >= 1024.0 => (1024.0, "KiB"),
            _ => (1.0, "B"),
        }
    }
}

impl ValueFormatter for BytesFormatter {
    fn scale_values(&self, typical_value: f64, values: &mut [f64]) -> &'static str {
        let (divisor, unit) = BytesFormatter::unit(typical_value);
        values.iter_mut().for_each(|v| *v /= divisor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical_value: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        // Bytes per element (or per input byte) of the throughput.
        let per = match throughput {
            Throughput::Elements(n) | Throughput::Bytes(n) | Throughput::BytesDecimal(n) => {
                (*n).max(1) as f64
            }
            _ => 1.0,
        };
        values.iter_mut().for_each(|v| *v /= per);
        let (divisor, unit) = BytesFormatter::unit(typical_value / per);
        values.iter_mut().for_each(|v| *v /= divisor);
        match (unit, throughput) {
            ("B", Throughput::Elements(_)) => "B/elem",
            ("KiB", Throughput::Elements(_)) => "KiB/elem",
            ("MiB", Throughput::Elements(_)) => "MiB/elem",
            ("GiB", Throughput::Elements(_)) => "GiB/elem",
            (unit, _) => unit,
        }
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "B"
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
