//! Publishing memledger's books through the `metrics` facade.
//!
//! [`publish`] records one [`Sample`] as gauges and counters of the `metrics` crate: per scope, per
//! layer of the [`Reconciliation`](memledger_monitor::Reconciliation), against the budget and for
//! suspected leaks. Any exporter installed as the `metrics` recorder serves them: Prometheus,
//! StatsD, OpenTelemetry... A [`Publisher`] does it on a thread of its own for every tick of a
//! [`Sampler`]. [`render_prometheus`] writes the same metrics as Prometheus's text exposition
//! format without any recorder (what `memledger-http` serves at `/metrics`): one description of
//! every metric feeds both.
//!
//! Install the recorder (the exporter) first, then start the publisher: [`describe`], which the
//! publisher calls as it starts, gives each metric its unit and help text in the recorder that is
//! installed at that moment.
//!
//! # Metrics
//!
//! Scope labels are paths (`project_indexes/postings`); the unscoped root, whose path is empty,
//! is labelled [`UNSCOPED_LABEL`] (`<unscoped>`), because Prometheus reads an empty label as an
//! absent one. Scopes are published once they have had any activity; scope ids are never
//! reused, so a published series never goes stale.
//!
//! | Metric | Type | Labels | Value |
//! |---|---|---|---|
//! | `memledger_scope_live_bytes` | gauge | `scope` | bytes of the scope's live blocks |
//! | `memledger_scope_peak_bytes` | gauge | `scope` | highest `live_bytes` since the process started, or since `measure` last restarted it |
//! | `memledger_scope_allocations_total` | counter | `scope` | blocks allocated |
//! | `memledger_scope_deallocations_total` | counter | `scope` | blocks freed |
//! | `memledger_scope_reallocations_total` | counter | `scope` | blocks resized |
//! | `memledger_scope_allocated_bytes_total` | counter | `scope` | bytes brought in: allocations and realloc growth |
//! | `memledger_scope_freed_bytes_total` | counter | `scope` | bytes released: frees and realloc shrinkage |
//! | `memledger_scope_refused_allocations_total` | counter | `scope` | allocations refused by the scope's enforced limit (scopes with a limit) |
//! | `memledger_scope_growth_bytes_per_second` | gauge | `scope` | least-squares slope of `live_bytes` over the leak-detection window (0 without growth) |
//! | `memledger_scope_suspected_leak` | gauge | `scope` | 1 while the scope is a suspected leak, else 0 |
//! | `memledger_scope_budget_level` | gauge | `scope` | the scope against its own budget: 0 healthy, 1 caution, 3 critical (scopes with a budget) |
//! | `memledger_scope_budget_bytes` | gauge | `scope`, `limit` = `soft` \| `hard` | the scope's budget |
//! | `memledger_memory_bytes` | gauge | `layer` | one layer of the reconciliation (below) |
//! | `memledger_gap_bytes` | gauge | `kind` | one named gap between layers (below) |
//! | `memledger_remainder_bytes` | gauge | | the RSS minus the ledger and every gap: 0, or negative by the layers' overlap |
//! | `memledger_budget_level` | gauge | | 0 healthy, 1 caution, 2 warning, 3 critical |
//! | `memledger_budget_bytes` | gauge | `limit` = `total` \| `soft` \| `prompt` \| `hard` | the process's budget |
//! | `memledger_budget_current_bytes` | gauge | | the figure checked against the budget (RSS, cgroup usage or ledger) |
//! | `memledger_growth_bytes_per_second` | gauge | | least-squares slope of that figure over the window |
//!
//! The `layer` label of `memledger_memory_bytes` is one of `ledger` (live bytes as requested),
//! `tags` (the ledger's tags on them), `allocated`, `active`, `metadata`, `resident`, `mapped`
//! and `retained` (jemalloc's statistics, when the inner allocator is jemalloc), `rss`,
//! `file_backed` (where the platform tells it) and `cgroup_usage` (in a cgroup with a memory
//! controller). A tick whose process reading failed publishes only `ledger`.
//!
//! The `kind` label of `memledger_gap_bytes` is one of `tags`, `size_class_rounding`,
//! `fragmentation`, `allocator_metadata`, `dirty_pages`, `file_backed` and `outside_heap`, or,
//! without jemalloc's statistics, `allocator_overhead_and_outside_heap` and `file_backed` (see
//! [`GapKind`]).
//!
//! # Example
//!
//! Serving the metrics over HTTP for Prometheus to scrape, with `metrics-exporter-prometheus`:
//!
//! ```no_run
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Binds at once; the listener runs on a thread of its own when no tokio runtime is current.
//! metrics_exporter_prometheus::PrometheusBuilder::new()
//!     .with_http_listener(([127, 0, 0, 1], 9898))
//!     .install()?;
//! let sampler = memledger_monitor::Sampler::builder().start()?;
//! let publisher = memledger_metrics::Publisher::start(&sampler)?;
//! // ... `curl http://127.0.0.1:9898/metrics`
//! publisher.stop();
//! # Ok(())
//! # }
//! ```
//!
//! One sample published to a recorder of the test's own, and rendered:
//!
//! ```
//! # #[global_allocator]
//! # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
//! let index = memledger::in_scope("global_index", || vec![0u8; 10_000]);
//! let sampler = memledger_monitor::Sampler::builder().start()?;
//! let sample = sampler.sample_now();
//! metrics::with_local_recorder(&recorder, || {
//!     memledger_metrics::describe();
//!     memledger_metrics::publish(&sample);
//! });
//! let text = recorder.handle().render();
//! assert!(text.contains("# TYPE memledger_scope_live_bytes gauge"));
//! assert!(text.contains("memledger_scope_live_bytes{scope=\"global_index\"} 10000\n"));
//! assert!(text.contains("memledger_budget_level "));
//! # drop(index);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use ::metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use crossbeam_channel::{select, Sender};

use memledger::UNSCOPED;
use memledger_monitor::{Error, Event, GapKind, Level, Sample, Sampler};

/// The `scope` label of the unscoped root, whose path is empty.
pub const UNSCOPED_LABEL: &str = "<unscoped>";

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
}

/// One metric: the one description that both [`describe`]/[`publish`] (through the `metrics`
/// facade) and [`render_prometheus`] (as text) read, so that the two never disagree.
struct Metric {
    name: &'static str,
    kind: Kind,
    /// The unit given to the `metrics` recorder (Prometheus text carries none).
    unit: Option<Unit>,
    help: &'static str,
}

const fn gauge_of(name: &'static str, unit: Option<Unit>, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        unit,
        help,
    }
}

const fn counter_of(name: &'static str, unit: Unit, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        unit: Some(unit),
        help,
    }
}

const BYTES: Option<Unit> = Some(Unit::Bytes);

static SCOPE_LIVE: Metric = gauge_of(
    "memledger_scope_live_bytes",
    BYTES,
    "Bytes of the scope's live blocks, as requested.",
);
static SCOPE_PEAK: Metric = gauge_of(
    "memledger_scope_peak_bytes",
    BYTES,
    "Highest live bytes of the scope since the process started, or since its peak was last \
     restarted.",
);
static SCOPE_ALLOCATIONS: Metric = counter_of(
    "memledger_scope_allocations_total",
    Unit::Count,
    "Blocks the scope allocated.",
);
static SCOPE_DEALLOCATIONS: Metric = counter_of(
    "memledger_scope_deallocations_total",
    Unit::Count,
    "Blocks of the scope freed.",
);
static SCOPE_REALLOCATIONS: Metric = counter_of(
    "memledger_scope_reallocations_total",
    Unit::Count,
    "Blocks of the scope resized in place or moved.",
);
static SCOPE_ALLOCATED: Metric = counter_of(
    "memledger_scope_allocated_bytes_total",
    Unit::Bytes,
    "Bytes brought into the scope: allocations plus realloc growth.",
);
static SCOPE_FREED: Metric = counter_of(
    "memledger_scope_freed_bytes_total",
    Unit::Bytes,
    "Bytes released by the scope: frees plus realloc shrinkage.",
);
static SCOPE_REFUSED: Metric = counter_of(
    "memledger_scope_refused_allocations_total",
    Unit::Count,
    "Allocations and resizes refused by the scope's enforced limit.",
);
static SCOPE_GROWTH: Metric = gauge_of(
    "memledger_scope_growth_bytes_per_second",
    BYTES,
    "Growth of the scope's live bytes per second: least-squares slope over the window.",
);
static SCOPE_LEAK: Metric = gauge_of(
    "memledger_scope_suspected_leak",
    None,
    "1 while the scope grows steadily enough to be a suspected leak, else 0.",
);
static SCOPE_BUDGET_LEVEL: Metric = gauge_of(
    "memledger_scope_budget_level",
    None,
    "The scope against its own budget: 0 healthy, 1 caution, 3 critical.",
);
static SCOPE_BUDGET: Metric = gauge_of(
    "memledger_scope_budget_bytes",
    BYTES,
    "The scope's soft and hard limits.",
);
static MEMORY: Metric = gauge_of(
    "memledger_memory_bytes",
    BYTES,
    "One layer of memory: the ledger, its tags, the allocator's, the kernel's, the cgroup's.",
);
static GAP: Metric = gauge_of(
    "memledger_gap_bytes",
    BYTES,
    "One named gap between two layers of memory.",
);
static REMAINDER: Metric = gauge_of(
    "memledger_remainder_bytes",
    BYTES,
    "RSS minus the ledger and every named gap: 0, or negative by the layers' overlap.",
);
static BUDGET_LEVEL: Metric = gauge_of(
    "memledger_budget_level",
    None,
    "The process against its budget: 0 healthy, 1 caution, 2 warning, 3 critical.",
);
static BUDGET: Metric = gauge_of(
    "memledger_budget_bytes",
    BYTES,
    "The process's memory budget: its total and its soft, prompt and hard limits.",
);
static BUDGET_CURRENT: Metric = gauge_of(
    "memledger_budget_current_bytes",
    BYTES,
    "The figure checked against the budget: RSS, cgroup usage or ledger.",
);
static GROWTH: Metric = gauge_of(
    "memledger_growth_bytes_per_second",
    BYTES,
    "Growth of the budgeted figure per second: least-squares slope over the window.",
);

/// Every metric, in the order the text exposition lists them.
static METRICS: [&Metric; 19] = [
    &SCOPE_LIVE,
    &SCOPE_PEAK,
    &SCOPE_ALLOCATIONS,
    &SCOPE_DEALLOCATIONS,
    &SCOPE_REALLOCATIONS,
    &SCOPE_ALLOCATED,
    &SCOPE_FREED,
    &SCOPE_REFUSED,
    &SCOPE_GROWTH,
    &SCOPE_LEAK,
    &SCOPE_BUDGET_LEVEL,
    &SCOPE_BUDGET,
    &MEMORY,
    &GAP,
    &REMAINDER,
    &BUDGET_LEVEL,
    &BUDGET,
    &BUDGET_CURRENT,
    &GROWTH,
];

/// A series' labels: keys are fixed, values come from the sample.
type Labels = Vec<(&'static str, String)>;

/// A value of one series: gauges are set, counters are absolute totals.
#[derive(Clone, Copy, Debug)]
enum Value {
    Gauge(f64),
    Counter(u64),
}

/// Gives every metric [`publish`] records its unit and help text, in the recorder installed now.
///
/// [`Publisher::start`] calls it; call it yourself when you call [`publish`] directly. Recorders
/// keep the first description of a metric, so calling it again does no harm.
pub fn describe() {
    for metric in METRICS {
        match (metric.kind, metric.unit) {
            (Kind::Gauge, Some(unit)) => describe_gauge!(metric.name, unit, metric.help),
            (Kind::Gauge, None) => describe_gauge!(metric.name, metric.help),
            (Kind::Counter, Some(unit)) => describe_counter!(metric.name, unit, metric.help),
            (Kind::Counter, None) => describe_counter!(metric.name, metric.help),
        }
    }
}

/// The level as a number: 0 healthy, 1 caution, 2 warning, 3 critical.
fn level_value(level: Level) -> f64 {
    match level {
        Level::Healthy => 0.0,
        Level::Caution => 1.0,
        Level::Warning => 2.0,
        Level::Critical => 3.0,
    }
}

/// The `kind` label of a gap.
fn gap_label(kind: GapKind) -> &'static str {
    match kind {
        GapKind::Tags => "tags",
        GapKind::CachedBlocks => "cached_blocks",
        GapKind::SizeClassRounding => "size_class_rounding",
        GapKind::Fragmentation => "fragmentation",
        GapKind::AllocatorMetadata => "allocator_metadata",
        GapKind::DirtyPages => "dirty_pages",
        GapKind::AllocatorOverheadAndOutsideHeap => "allocator_overhead_and_outside_heap",
        GapKind::FileBacked => "file_backed",
        GapKind::OutsideHeap => "outside_heap",
    }
}

/// The `scope` label of a path: the path, or [`UNSCOPED_LABEL`] for the root.
fn scope_label(path: &str) -> String {
    if path == UNSCOPED {
        UNSCOPED_LABEL.to_string()
    } else {
        path.to_string()
    }
}

/// Every series of `sample`, in the order of [`METRICS`] within each group: the one walk that
/// both the facade's publishing and the text exposition take.
fn series(sample: &Sample, emit: &mut dyn FnMut(&'static Metric, Labels, Value)) {
    let growth: HashMap<&str, f64> = sample
        .scope_growth
        .iter()
        .map(|(path, rate)| (path.as_str(), rate.window))
        .collect();
    let scoped = |scope: &str| vec![("scope", scope.to_string())];
    for stats in sample.snapshot.scopes() {
        if stats.allocations + stats.deallocations + stats.reallocations == 0 {
            continue;
        }
        let scope = scope_label(&stats.path);
        let gauge = |v: u64| Value::Gauge(v as f64);
        emit(&SCOPE_LIVE, scoped(&scope), gauge(stats.live_bytes));
        emit(&SCOPE_PEAK, scoped(&scope), gauge(stats.peak_bytes));
        for (metric, total) in [
            (&SCOPE_ALLOCATIONS, stats.allocations),
            (&SCOPE_DEALLOCATIONS, stats.deallocations),
            (&SCOPE_REALLOCATIONS, stats.reallocations),
            (&SCOPE_ALLOCATED, stats.allocated_bytes),
            (&SCOPE_FREED, stats.freed_bytes),
        ] {
            emit(metric, scoped(&scope), Value::Counter(total));
        }
        if stats.limit_bytes.is_some() || stats.refused_allocations > 0 {
            let refused = Value::Counter(stats.refused_allocations);
            emit(&SCOPE_REFUSED, scoped(&scope), refused);
        }
        let rate = growth.get(stats.path.as_str()).copied().unwrap_or(0.0);
        emit(&SCOPE_GROWTH, scoped(&scope), Value::Gauge(rate));
        let leak = sample.leaks.iter().any(|l| l.path == stats.path);
        let leak = Value::Gauge(if leak { 1.0 } else { 0.0 });
        emit(&SCOPE_LEAK, scoped(&scope), leak);
    }

    for scope_status in &sample.status.scopes {
        let scope = scope_label(&scope_status.path);
        let level = Value::Gauge(level_value(scope_status.level));
        emit(&SCOPE_BUDGET_LEVEL, scoped(&scope), level);
        let budget = &scope_status.budget;
        for (limit, bytes) in [("soft", budget.soft), ("hard", budget.hard)] {
            let labels = vec![("scope", scope.clone()), ("limit", limit.to_string())];
            emit(&SCOPE_BUDGET, labels, Value::Gauge(bytes as f64));
        }
    }

    let mut layer = |name: &str, bytes: u64| {
        let labels = vec![("layer", name.to_string())];
        emit(&MEMORY, labels, Value::Gauge(bytes as f64));
    };
    match &sample.reconciliation {
        Ok(r) => {
            layer("ledger", r.ledger_bytes);
            layer("tags", r.tag_bytes);
            if let Ok(a) = &r.allocator {
                layer("allocated", a.allocated);
                layer("active", a.active);
                layer("metadata", a.metadata);
                layer("resident", a.resident);
                layer("mapped", a.mapped);
                layer("retained", a.retained);
            }
            layer("rss", r.process.rss_bytes);
            if let Some(file) = r.process.file_backed_bytes {
                layer("file_backed", file);
            }
            if let Some(cgroup) = &r.cgroup {
                layer("cgroup_usage", cgroup.usage_bytes);
            }
            for gap in r.gaps() {
                let labels = vec![("kind", gap_label(gap.kind).to_string())];
                emit(&GAP, labels, Value::Gauge(gap.bytes as f64));
            }
            emit(&REMAINDER, Vec::new(), Value::Gauge(r.remainder() as f64));
        }
        Err(_) => layer("ledger", sample.snapshot.total_live_bytes()),
    }

    let status = &sample.status;
    emit(
        &BUDGET_LEVEL,
        Vec::new(),
        Value::Gauge(level_value(status.level)),
    );
    let budget = &status.budget;
    for (limit, bytes) in [
        ("total", budget.total),
        ("soft", budget.soft),
        ("prompt", budget.prompt),
        ("hard", budget.hard),
    ] {
        let labels = vec![("limit", limit.to_string())];
        emit(&BUDGET, labels, Value::Gauge(bytes as f64));
    }
    let current = Value::Gauge(status.current_bytes as f64);
    emit(&BUDGET_CURRENT, Vec::new(), current);
    emit(&GROWTH, Vec::new(), Value::Gauge(status.growth.window));
}

/// Records `sample` through the `metrics` facade, in the recorder current on this thread (see the
/// [module docs](self) for the metrics).
///
/// Label values are allocated on each call; call it where that memory may be booked, as a
/// [`Publisher`] does on its own thread.
pub fn publish(sample: &Sample) {
    series(sample, &mut |metric, labels, value| {
        let labels: Vec<::metrics::Label> = labels
            .into_iter()
            .map(|(key, value)| ::metrics::Label::new(key, value))
            .collect();
        match value {
            Value::Gauge(v) => gauge!(metric.name, labels).set(v),
            Value::Counter(v) => counter!(metric.name, labels).absolute(v),
        }
    });
}

/// `sample` in the Prometheus text exposition format (version 0.0.4, served as
/// `text/plain; version=0.0.4`): the metrics [`publish`] records, under the same names, labels
/// and help texts, with no `metrics` recorder installed. Each metric that has a series gets its
/// `# HELP` and `# TYPE` lines, then one line per series; label values and help texts are
/// escaped as the format asks.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() -> Result<(), memledger_monitor::Error> {
/// let index = memledger::in_scope("global_index", || vec![0u8; 10_000]);
/// let sampler = memledger_monitor::Sampler::builder().start()?;
/// let text = memledger_metrics::render_prometheus(&sampler.sample_now());
/// assert!(text.contains("# TYPE memledger_scope_live_bytes gauge\n"));
/// assert!(text.contains("memledger_scope_live_bytes{scope=\"global_index\"} 10000\n"));
/// # drop(index);
/// # Ok(())
/// # }
/// ```
pub fn render_prometheus(sample: &Sample) -> String {
    let mut by_metric: Vec<Vec<(Labels, Value)>> = METRICS.iter().map(|_| Vec::new()).collect();
    series(sample, &mut |metric, labels, value| {
        if let Some(at) = METRICS.iter().position(|m| m.name == metric.name) {
            by_metric[at].push((labels, value));
        }
    });
    let mut out = String::with_capacity(8 * 1024);
    for (metric, series) in METRICS.iter().zip(&by_metric) {
        if series.is_empty() {
            continue;
        }
        // Writing to a `String` cannot fail.
        let _ = writeln!(out, "# HELP {} {}", metric.name, escape_help(metric.help));
        let kind = match metric.kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", metric.name);
        for (labels, value) in series {
            out.push_str(metric.name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (key, value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{key}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            out.push(' ');
            match *value {
                Value::Counter(v) => {
                    let _ = write!(out, "{v}");
                }
                Value::Gauge(v) => write_float(&mut out, v),
            }
            out.push('\n');
        }
    }
    out
}

/// A float as the exposition format writes it: `NaN`, `+Inf`, `-Inf`, or Rust's shortest
/// round-tripping decimal (which Prometheus parses).
fn write_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A help text: backslashes and line feeds escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A label value: backslashes, double quotes and line feeds escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Publishes every tick of a [`Sampler`] through the `metrics` facade, on a thread of its own
/// (`memledger-metrics`).
///
/// The publisher subscribes to the sampler like any reader: one that falls behind skips the
/// oldest ticks and publishes the newest ([`dropped`](Publisher::dropped) counts the skipped).
/// It ends when the sampler stops, when [`stop`](Publisher::stop) is called, or when it is
/// dropped. What it allocates, label values included, is booked to the crate's own scope
/// ([`OWN_SCOPE`](memledger::OWN_SCOPE)).
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Install the exporter first; without one the metrics go nowhere.
/// let sampler = memledger_monitor::Sampler::builder()
///     .interval(std::time::Duration::from_millis(10))
///     .start()?;
/// let publisher = memledger_metrics::Publisher::start(&sampler)?;
/// sampler.sample_now();
/// while publisher.published() == 0 {
///     std::thread::sleep(std::time::Duration::from_millis(1));
/// }
/// publisher.stop();
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Publisher {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
    /// The process that started the thread: a child of `fork` has no such thread.
    pid: u32,
}

#[derive(Debug, Default)]
struct Counts {
    published: AtomicU64,
    dropped: AtomicU64,
}

impl Publisher {
    /// Describes the metrics (see [`describe`]), subscribes to `sampler` and starts publishing
    /// its ticks, from the next one on.
    pub fn start(sampler: &Sampler) -> Result<Publisher, Error> {
        let _own = memledger::__private::own_scope();
        describe();
        let subscription = sampler.subscribe();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let counts = Arc::new(Counts::default());
        let thread = {
            let counts = Arc::clone(&counts);
            std::thread::Builder::new()
                .name("memledger-metrics".into())
                .spawn(move || {
                    let _own = memledger::__private::own_scope();
                    let publish_counted = |event: Event| {
                        if let Event::Sample(sample) = event {
                            publish(&sample);
                            counts.published.fetch_add(1, Ordering::Relaxed);
                        }
                        counts
                            .dropped
                            .store(subscription.dropped(), Ordering::Relaxed);
                    };
                    loop {
                        select! {
                            recv(subscription.receiver()) -> event => match event {
                                Ok(event) => publish_counted(event),
                                Err(_) => break,
                            },
                            recv(stopped) -> _ => {
                                // Only the newest queued tick matters to gauges and counters.
                                let mut newest = None;
                                while let Some(event) = subscription.try_recv() {
                                    if matches!(event, Event::Sample(_)) {
                                        newest = Some(event);
                                    }
                                }
                                if let Some(event) = newest {
                                    publish_counted(event);
                                }
                                break;
                            }
                        }
                    }
                })
                .map_err(Error::Spawn)?
        };
        Ok(Publisher {
            stop: Some(stop),
            thread: Some(thread),
            counts,
            pid: std::process::id(),
        })
    }

    /// Samples published so far.
    pub fn published(&self) -> u64 {
        self.counts.published.load(Ordering::Relaxed)
    }

    /// Events skipped so far because the publisher fell behind the sampler.
    pub fn dropped(&self) -> u64 {
        self.counts.dropped.load(Ordering::Relaxed)
    }

    /// Whether the publishing thread still runs (it ends when the sampler stops).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Publishes the newest queued tick, if any, and stops the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = memledger::__private::join_unless_forked(thread, self.pid);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
