//! The sampler: a background thread that reads the books and the layers under them on an
//! interval, keeps a history, fits growth rates, checks budgets and streams it all.

use core::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;

mod builder;
mod handoff;
pub mod monitor;
mod subscription;
mod worker;

pub use builder::SamplerBuilder;
use subscription::Subscriber;
pub use subscription::Subscription;
use worker::Worker;

use memledger::__private::release_limits;
use memledger::{Snapshot, SnapshotDiff};

use crate::budget::Level;
use crate::growth::{GrowthRate, SuspectedLeak};
use crate::history::{History, HistoryEntry};
use crate::reconcile::process::ReadError;
use crate::reconcile::Reconciliation;
use crate::status::Status;

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
    /// The sampled allocation sites, on the ticks that took a profile (every
    /// [`SamplerBuilder::profile_every`], and when a leak is first suspected); `None` on the
    /// others.
    #[cfg(feature = "profile")]
    #[cfg_attr(feature = "serde", serde(default))]
    pub profile: Option<Arc<crate::profile::Profile>>,
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

/// The shared state, locked, behind the fork gate (`memledger::__private::fork_gate`): a child of
/// `fork` never finds it locked by a thread it does not have.
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
