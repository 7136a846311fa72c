//! The sampler: a background thread that reads the books and the layers under them on an
//! interval, keeps a history, fits growth rates, checks budgets and streams it all.

use core::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

mod handoff;
pub mod monitor;

use handoff::Rejected;

use crate::reconcile::allocator::AllocatorStats;
use memledger::__private::{override_limit, release_limits};
use memledger::{Snapshot, SnapshotDiff};

use crate::budget::{Budget, Level, ScopeBudget};
use crate::error::Error;
use crate::growth::{GrowthRate, LeakDetection, SuspectedLeak, MAX_FIT_SAMPLES};
use crate::history::{History, HistoryEntry};
use crate::reconcile::process::{CgroupMemory, ProcessMemory, ReadError};
use crate::reconcile::Reconciliation;
use crate::status::{BudgetBasis, Status, StatusInputs};

/// Everything one tick of the sampler found.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Sample {
    /// Ticks before this one.
    pub sequence: u64,
    /// When the tick ran.
    pub at: SystemTime,
    /// Time since the sampler started (monotonic).
    pub uptime: Duration,
    /// The books.
    pub snapshot: Snapshot,
    /// The layers, or why the process's memory could not be read this time.
    pub reconciliation: Result<Reconciliation, ReadError>,
    /// Growth of every scope that held bytes in the window, the fastest first.
    pub scope_growth: Vec<(String, GrowthRate)>,
    /// Scopes that grow steadily.
    pub leaks: Vec<SuspectedLeak>,
    /// The budget status.
    pub status: Status,
}

/// What the sampler sends to its subscribers.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Event {
    /// A tick.
    Sample(Arc<Sample>),
    /// The process's level changed.
    LevelChanged {
        /// When.
        at: SystemTime,
        /// The previous level.
        from: Level,
        /// The new level.
        to: Level,
        /// The measured bytes.
        current_bytes: u64,
    },
    /// A scope's level against its own budget changed.
    ScopeLevelChanged {
        /// When.
        at: SystemTime,
        /// The scope.
        path: String,
        /// The previous level.
        from: Level,
        /// The new level.
        to: Level,
        /// Its live bytes.
        live_bytes: u64,
    },
    /// A scope became a suspected leak.
    LeakSuspected(SuspectedLeak),
    /// The process's memory could not be read; the tick used the ledger instead.
    ReadFailed {
        /// When.
        at: SystemTime,
        /// Why.
        error: ReadError,
    },
}

/// A stream of the sampler's events, from [`Sampler::subscribe`].
///
/// Each subscription has a bounded queue. When a reader falls behind and its queue is full, the
/// sampler drops the *oldest* queued event to make room for the newest and counts it in
/// [`dropped`](Subscription::dropped): a slow or absent reader never blocks the sampler, never
/// grows memory, and reads the latest state when it catches up. Dropping the subscription
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    receiver: Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Waits for the next event; `None` once the sampler has stopped and the queue is empty.
    pub fn recv(&self) -> Option<Event> {
        self.receiver.recv().ok()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }

    /// The underlying channel, for `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<Event> {
        &self.receiver
    }

    /// Events dropped from this subscription's full queue so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The sampler's end of a subscription.
struct Subscriber {
    sender: Sender<Event>,
    /// A second receiver, to drop the oldest event when the queue is full.
    oldest: Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl Subscriber {
    /// Sends without blocking; `false` once the reader is gone.
    fn send(&self, event: Event, dropped_total: &mut u64) -> bool {
        // The sampler holds a receiver itself, so the channel never disconnects: the reader is
        // gone when only the sampler's own count of the `dropped` counter is left.
        if Arc::strong_count(&self.dropped) == 1 {
            return false;
        }
        match handoff::send_dropping_oldest(self, event) {
            Some(dropped) => {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
                *dropped_total += dropped;
                true
            }
            None => false,
        }
    }
}

impl handoff::Queue for Subscriber {
    type Item = Event;

    fn try_push(&self, event: Event) -> Result<(), Rejected<Event>> {
        self.sender.try_send(event).map_err(|e| match e {
            TrySendError::Full(back) => Rejected::Full(back),
            TrySendError::Disconnected(_) => Rejected::Closed,
        })
    }

    fn drop_oldest(&self) -> bool {
        self.oldest.try_recv().is_ok()
    }
}

/// Counters of the sampler's own work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SamplerStats {
    /// Ticks run.
    pub ticks: u64,
    /// Ticks whose process reading failed.
    pub read_failures: u64,
    /// Events dropped from full subscriber queues, all subscribers together.
    pub dropped_events: u64,
    /// Entries in the history.
    pub history_len: usize,
    /// How long the last tick took.
    pub last_tick: Duration,
    /// How long all ticks took together (wall-clock time on the ticking thread).
    pub total_tick_time: Duration,
    /// CPU time the sampler thread has used (Linux; `None` elsewhere).
    pub cpu_time: Option<Duration>,
}

/// A source of the process's memory; see [`SamplerBuilder::memory_source`].
type MemorySource = Box<dyn FnMut() -> Result<ProcessMemory, ReadError> + Send>;

/// Configures and starts a [`Sampler`]; see [`Sampler::builder`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct SamplerBuilder {
    interval: Duration,
    retention: Duration,
    max_history: Option<usize>,
    budget: Option<Budget>,
    measure: BudgetBasis,
    scope_budgets: Vec<(String, ScopeBudget)>,
    leak_detection: LeakDetection,
    queue: usize,
    memory_source: Option<MemorySource>,
}

impl fmt::Debug for SamplerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SamplerBuilder")
            .field("interval", &self.interval)
            .field("retention", &self.retention)
            .field("budget", &self.budget)
            .field("measure", &self.measure)
            .field("scope_budgets", &self.scope_budgets)
            .field("leak_detection", &self.leak_detection)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Default for SamplerBuilder {
    fn default() -> Self {
        SamplerBuilder {
            interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            max_history: None,
            budget: None,
            measure: BudgetBasis::Rss,
            scope_budgets: Vec::new(),
            leak_detection: LeakDetection::default(),
            queue: 64,
            memory_source: None,
        }
    }
}

impl SamplerBuilder {
    /// Time between ticks (default 1 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long history is kept (default 24 h). The history is a ring of at most
    /// `retention / interval` entries (or [`max_history`](Self::max_history)), each about
    /// `200 + 8 × scopes` bytes, booked to the crate's own scope.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// A cap on history entries, below `retention / interval`.
    pub fn max_history(mut self, entries: usize) -> Self {
        self.max_history = Some(entries);
        self
    }

    /// The process's budget (default: [`Budget::builder`]'s defaults over the cgroup limit or the
    /// physical memory).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// The figure the budget is checked against (default [`BudgetBasis::Rss`]).
    pub fn measure(mut self, measure: BudgetBasis) -> Self {
        self.measure = measure;
        self
    }

    /// A budget for the scope at `path`. An [enforced](ScopeBudget::enforced) one limits the
    /// scope's allocations from [`start`](Self::start) until the sampler stops. The newest
    /// sampler's limit applies; when samplers stop, in any order, the scope returns to the
    /// newest remaining one's, and after the last to its own limit (see
    /// [`limit_scope`](memledger::limit_scope)).
    pub fn scope_budget(mut self, path: &str, budget: ScopeBudget) -> Self {
        let path = path
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        self.scope_budgets.retain(|(p, _)| *p != path);
        self.scope_budgets.push((path, budget));
        self
    }

    /// When a scope counts as a suspected leak.
    pub fn leak_detection(mut self, detection: LeakDetection) -> Self {
        self.leak_detection = detection;
        self
    }

    /// Events each subscriber's queue holds before the oldest are dropped (default 64).
    pub fn queue(mut self, events: usize) -> Self {
        self.queue = events;
        self
    }

    /// Where the process's memory is read from (default [`ProcessMemory::read`]). For tests
    /// and for platforms with a better source; readings are validated like the default's, and a
    /// source that panics counts as a failed reading. The source runs on the ticking thread
    /// with the sampler's tick lock held: it must not call into this sampler or [`monitor`].
    pub fn memory_source(
        mut self,
        source: impl FnMut() -> Result<ProcessMemory, ReadError> + Send + 'static,
    ) -> Self {
        self.memory_source = Some(Box::new(source));
        self
    }

    /// Checks the settings, applies enforced scope budgets and starts the sampler thread. The
    /// first tick runs at once.
    pub fn start(self) -> Result<Sampler, Error> {
        let invalid = |setting, reason: &str| Error::InvalidSetting {
            setting,
            reason: reason.to_string(),
        };
        if self.interval.is_zero() {
            return Err(invalid("interval", "must be longer than zero"));
        }
        if self.retention < self.interval {
            return Err(invalid("retention", "must be at least one interval"));
        }
        if self.queue == 0 {
            return Err(invalid("queue", "must hold at least one event"));
        }
        if self.max_history == Some(0) {
            return Err(invalid("max_history", "must keep at least one entry"));
        }
        let ld = &self.leak_detection;
        if !(0.0..=1.0).contains(&ld.min_fit) || ld.min_rate.is_nan() || ld.window.is_zero() {
            return Err(invalid(
                "leak_detection",
                "needs a non-zero window, a rate that is a number and a fit between 0 and 1",
            ));
        }
        if ld.window.as_nanos() / self.interval.as_nanos() >= u128::from(MAX_FIT_SAMPLES) {
            return Err(invalid(
                "leak_detection",
                "the window holds more than 2^20 intervals; lengthen the interval or shorten \
                 the window",
            ));
        }
        let budget = match self.budget {
            Some(budget) => budget,
            None => Budget::builder().build()?,
        };
        let _own = memledger::__private::own_scope();
        let per_retention = (self.retention.as_nanos() / self.interval.as_nanos()).max(1) + 1;
        let capacity = self
            .max_history
            .unwrap_or(usize::MAX)
            .min(per_retention.min(usize::MAX as u128) as usize);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                history: History::new(capacity, self.retention, self.leak_detection.window),
                baseline: None,
                latest: None,
                subscribers: Vec::new(),
                stats: SamplerStats::default(),
            }),
        });
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let worker = Worker {
            shared: Arc::clone(&shared),
            interval: self.interval,
            budget,
            measure: self.measure,
            scope_budgets: self.scope_budgets.clone(),
            leak_detection: self.leak_detection,
            memory_source: self.memory_source,
            started: Instant::now(),
            // A sampler that starts past a limit reports the change from healthy at once.
            level: Level::Healthy,
            scope_levels: vec![Level::Healthy; self.scope_budgets.len()],
            suspected: Vec::new(),
        };
        let worker = Arc::new(Mutex::new(worker));
        let thread = {
            let worker = Arc::clone(&worker);
            std::thread::Builder::new()
                .name("memledger-sampler".to_string())
                .spawn(move || Worker::run(&worker, stopped))
                .map_err(Error::Spawn)?
        };
        let sampler = Sampler {
            shared,
            worker,
            stop: Some(stop),
            thread: Some(thread),
            pid: std::process::id(),
            queue: self.queue,
            id: NEXT_SAMPLER.fetch_add(1, Ordering::Relaxed),
        };
        // Once the thread runs: a sampler that fails to start leaves no limit behind (dropping
        // it restores the limits applied so far).
        for (path, scope_budget) in &self.scope_budgets {
            if scope_budget.enforce {
                override_limit(sampler.id, path, scope_budget.hard)?;
            }
        }
        Ok(sampler)
    }
}

struct State {
    history: History,
    baseline: Option<Snapshot>,
    latest: Option<Arc<Sample>>,
    subscribers: Vec<Subscriber>,
    stats: SamplerStats,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> Locked<'_> {
        let gate = memledger::__private::fork_gate();
        Locked {
            // Every update leaves the state consistent, so a panic elsewhere does not spoil it.
            state: self.state.lock().unwrap_or_else(|e| e.into_inner()),
            _gate: gate,
        }
    }
}

/// The shared state, locked, behind the fork gate (see [`crate::fork`]): a child of `fork` never
/// finds it locked by a thread it does not have.
struct Locked<'a> {
    // Unlocked before the gate is left: fields drop in order.
    state: MutexGuard<'a, State>,
    _gate: memledger::__private::ForkGate,
}

impl core::ops::Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl core::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

/// Locks the worker behind the fork gate, so that no tick is under way when the process forks.
fn lock_worker(worker: &Mutex<Worker>) -> (memledger::__private::ForkGate, MutexGuard<'_, Worker>) {
    let gate = memledger::__private::fork_gate();
    (gate, worker.lock().unwrap_or_else(|e| e.into_inner()))
}

/// A running sampler. Stops (promptly, joining its thread) when dropped or on [`stop`].
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() {
/// use std::time::Duration;
/// let sampler = memledger_monitor::Sampler::builder()
///     .interval(Duration::from_millis(20))
///     .budget(memledger_monitor::Budget::builder().total(64 << 30).build().unwrap())
///     .start()
///     .unwrap();
/// let events = sampler.subscribe();
/// let index = memledger::in_scope("global_index", || vec![0u8; 1 << 20]);
/// // The first tick that sees the index.
/// let sample = std::iter::from_fn(|| events.recv_timeout(Duration::from_secs(10)))
///     .find_map(|event| match event {
///         memledger_monitor::Event::Sample(s)
///             if s.snapshot.scope("global_index").is_some_and(|g| g.live_bytes > 0) => Some(s),
///         _ => None,
///     })
///     .expect("a tick within 10 s");
/// println!("{}", sample.status);
/// assert!(sampler.status().is_some());
/// sampler.stop();
/// # drop(index);
/// # }
/// ```
///
/// [`stop`]: Sampler::stop
pub struct Sampler {
    shared: Arc<Shared>,
    worker: Arc<Mutex<Worker>>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The process that started the thread: a child of `fork` has no such thread.
    pid: u32,
    queue: usize,
    /// Tells this sampler's enforced limits from other samplers'.
    id: u64,
}

/// Ids of samplers.
static NEXT_SAMPLER: AtomicU64 = AtomicU64::new(0);

impl fmt::Debug for Sampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sampler")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// A builder with the defaults: 1 s interval, 24 h of history, the default budget.
    pub fn builder() -> SamplerBuilder {
        SamplerBuilder::default()
    }

    /// A new stream of events (see [`Subscription`] for what happens when it is not read).
    pub fn subscribe(&self) -> Subscription {
        let (sender, receiver) = crossbeam_channel::bounded(self.queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let _own = memledger::__private::own_scope();
        self.shared.lock().subscribers.push(Subscriber {
            sender,
            oldest: receiver.clone(),
            dropped: Arc::clone(&dropped),
        });
        Subscription { receiver, dropped }
    }

    /// Runs a tick now, on the calling thread, and returns it. The tick is recorded and sent like
    /// any other; the sampler's own schedule is unchanged. Useful at the end of a benchmark or
    /// before a decision that should see the latest figures.
    pub fn sample_now(&self) -> Arc<Sample> {
        let _own = memledger::__private::own_scope();
        let (_gate, mut worker) = lock_worker(&self.worker);
        worker.tick()
    }

    /// The last tick, if one has run.
    pub fn latest(&self) -> Option<Arc<Sample>> {
        self.shared.lock().latest.clone()
    }

    /// The status of the last tick.
    pub fn status(&self) -> Option<Status> {
        self.latest().map(|s| s.status.clone())
    }

    /// The last `n` history entries, oldest first.
    pub fn history_last(&self, n: usize) -> Vec<HistoryEntry> {
        self.shared.lock().history.last(n)
    }

    /// History entries taken between `from` and `to` (inclusive), oldest first.
    pub fn history_range(&self, from: SystemTime, to: SystemTime) -> Vec<HistoryEntry> {
        self.shared.lock().history.range(from, to)
    }

    /// Marks the books as they are now as the baseline for [`diff`](Self::diff).
    pub fn mark_baseline(&self) {
        let snapshot = memledger::snapshot();
        let _own = memledger::__private::own_scope();
        self.shared.lock().baseline = Some(snapshot);
    }

    /// What changed per scope since the baseline (`None` before [`mark_baseline`]).
    ///
    /// [`mark_baseline`]: Self::mark_baseline
    pub fn diff(&self) -> Option<SnapshotDiff> {
        let now = memledger::snapshot();
        let state = self.shared.lock();
        state.baseline.as_ref().map(|b| now.diff(b))
    }

    /// Counters of the sampler's own work.
    pub fn stats(&self) -> SamplerStats {
        let state = self.shared.lock();
        let mut stats = state.stats;
        stats.history_len = state.history.len();
        stats
    }

    /// Stops the sampler and waits for its thread; takes back the limits of its enforced scope
    /// budgets (each scope returns to the limit of the newest sampler still enforcing one on it,
    /// else to its own limit).
    /// Subscriptions read what is queued, then end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = memledger::__private::join_unless_forked(thread, self.pid);
        }
        release_limits(self.id);
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The sampler thread's own state.
struct Worker {
    shared: Arc<Shared>,
    interval: Duration,
    budget: Budget,
    measure: BudgetBasis,
    scope_budgets: Vec<(String, ScopeBudget)>,
    leak_detection: LeakDetection,
    memory_source: Option<MemorySource>,
    started: Instant,
    level: Level,
    scope_levels: Vec<Level>,
    suspected: Vec<String>,
}

impl Worker {
    /// The sampler thread: a tick, then a wait for the rest of the interval or for the stop.
    fn run(worker: &Mutex<Worker>, stopped: Receiver<()>) {
        // Everything the sampler allocates is the crate's own memory.
        let _own = memledger::__private::own_scope();
        loop {
            let began = Instant::now();
            let (shared, interval) = {
                let (_gate, mut worker) = lock_worker(worker);
                worker.tick();
                (Arc::clone(&worker.shared), worker.interval)
            };
            let spent = began.elapsed();
            shared.lock().stats.cpu_time = thread_cpu_time();
            // Ticks keep to the interval; a tick that overran it is followed at once.
            match stopped.recv_timeout(interval.saturating_sub(spent)) {
                Err(RecvTimeoutError::Timeout) => continue,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                    // Ends every subscription once its queue is read.
                    shared.lock().subscribers.clear();
                    return;
                }
            }
        }
    }

    fn read_memory(&mut self) -> Result<ProcessMemory, ReadError> {
        match &mut self.memory_source {
            Some(source) => {
                // A source that panics is a failed reading, not the end of the sampler.
                let memory = std::panic::catch_unwind(std::panic::AssertUnwindSafe(source))
                    .unwrap_or_else(|_| {
                        Err(ReadError::Io {
                            source: "the sampler's memory source".to_string(),
                            message: "it panicked".to_string(),
                        })
                    })?;
                memory.validate()?;
                Ok(memory)
            }
            None => ProcessMemory::read(),
        }
    }

    fn tick(&mut self) -> Arc<Sample> {
        let began = Instant::now();
        let at = SystemTime::now();
        let uptime = self.started.elapsed();
        let snapshot = memledger::snapshot();
        let allocator = AllocatorStats::read();
        let memory = self.read_memory();
        let cgroup = CgroupMemory::read().unwrap_or(None);
        let reconciliation = memory.map(|process| {
            Reconciliation::from_parts(&snapshot, allocator.clone(), process, cgroup)
        });
        let (measure, current_bytes, note) = match (self.measure, &reconciliation) {
            (BudgetBasis::Rss, Ok(r)) => (BudgetBasis::Rss, r.process.rss_bytes, None),
            (
                BudgetBasis::Cgroup,
                Ok(Reconciliation {
                    cgroup: Some(c), ..
                }),
            ) => (BudgetBasis::Cgroup, c.usage_bytes, None),
            (BudgetBasis::Ledger, _) => (BudgetBasis::Ledger, snapshot.total_live_bytes(), None),
            (wanted, Err(e)) => (
                BudgetBasis::Ledger,
                snapshot.total_live_bytes(),
                Some(format!(
                    "{wanted} unavailable, checked the ledger instead: {e}"
                )),
            ),
            (wanted, Ok(_)) => (
                BudgetBasis::Ledger,
                snapshot.total_live_bytes(),
                Some(format!("{wanted} unavailable, checked the ledger instead")),
            ),
        };
        let level = self.budget.level(current_bytes);

        let mut state = self.shared.lock();
        state.history.push(
            HistoryEntry {
                at,
                uptime,
                ledger_bytes: snapshot.total_live_bytes(),
                rss_bytes: reconciliation.as_ref().ok().map(|r| r.process.rss_bytes),
                allocated_bytes: allocator.as_ref().ok().map(|a| a.allocated),
                resident_bytes: allocator.as_ref().ok().map(|a| a.resident),
                measured_bytes: current_bytes,
                level,
                read_error: reconciliation.as_ref().err().cloned(),
                scopes: Vec::new(),
            },
            &snapshot,
        );
        let growth = state.history.measured_growth();
        let mut scope_growth: Vec<(String, GrowthRate)> = Vec::new();
        let mut leaks = Vec::new();
        for (id, scope) in snapshot.scopes().iter().enumerate() {
            let Some(rate) = state.history.scope_growth(id) else {
                continue;
            };
            if self.leak_detection.suspects(&rate) {
                leaks.push(SuspectedLeak {
                    path: scope.path.clone(),
                    rate,
                    live_bytes: scope.live_bytes,
                });
            }
            scope_growth.push((scope.path.clone(), rate));
        }
        scope_growth.sort_by(|a, b| b.1.window.total_cmp(&a.1.window));
        let status = Status::evaluate(StatusInputs {
            budget: self.budget,
            measure,
            current_bytes,
            note,
            snapshot: &snapshot,
            breakdown: reconciliation
                .as_ref()
                .map(|r| r.breakdown.clone())
                .unwrap_or_default(),
            growth,
            scope_growth: &scope_growth,
            scope_budgets: &self.scope_budgets,
            leaks: &leaks,
            min_span: self.leak_detection.window / 2,
        });

        let mut events = Vec::new();
        if let Err(error) = &reconciliation {
            state.stats.read_failures += 1;
            events.push(Event::ReadFailed {
                at,
                error: error.clone(),
            });
        }
        if self.level != level {
            events.push(Event::LevelChanged {
                at,
                from: self.level,
                to: level,
                current_bytes,
            });
            self.level = level;
        }
        for (i, scope) in status.scopes.iter().enumerate() {
            if self.scope_levels[i] != scope.level {
                events.push(Event::ScopeLevelChanged {
                    at,
                    path: scope.path.clone(),
                    from: self.scope_levels[i],
                    to: scope.level,
                    live_bytes: scope.live_bytes,
                });
                self.scope_levels[i] = scope.level;
            }
        }
        for leak in &leaks {
            if !self.suspected.contains(&leak.path) {
                self.suspected.push(leak.path.clone());
                events.push(Event::LeakSuspected(leak.clone()));
            }
        }
        self.suspected
            .retain(|path| leaks.iter().any(|leak| &leak.path == path));

        let sample = Arc::new(Sample {
            sequence: state.stats.ticks,
            at,
            uptime,
            snapshot,
            reconciliation,
            scope_growth,
            leaks,
            status,
        });
        state.stats.ticks += 1;
        state.latest = Some(Arc::clone(&sample));
        let spent = began.elapsed();
        state.stats.last_tick = spent;
        state.stats.total_tick_time += spent;
        events.insert(0, Event::Sample(Arc::clone(&sample)));
        let mut dropped = 0;
        state.subscribers.retain(|subscriber| {
            events
                .iter()
                .all(|e| subscriber.send(e.clone(), &mut dropped))
        });
        state.stats.dropped_events += dropped;
        sample
    }
}

/// CPU time used by the calling thread.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY:
    // - `ts` is a valid, writable `timespec`; the clock id is a constant the kernel knows.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Option<Duration> {
    None
}
