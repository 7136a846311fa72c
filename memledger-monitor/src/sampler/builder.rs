//! [`SamplerBuilder`]: a sampler's settings, checked when it starts.

use core::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memledger::__private::override_limit;

use super::worker::Worker;
use super::{Sampler, SamplerStats, Shared, State, NEXT_SAMPLER};
use crate::budget::{Budget, Level, ScopeBudget};
use crate::error::Error;
use crate::growth::{LeakDetection, MAX_FIT_SAMPLES};
use crate::history::History;
use crate::reconcile::process::{ProcessMemory, ReadError};
use crate::status::BudgetBasis;

/// A source of the process's memory; see [`SamplerBuilder::memory_source`].
pub(super) type MemorySource = Box<dyn FnMut() -> Result<ProcessMemory, ReadError> + Send>;

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
    profile_every: Option<Duration>,
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
            profile_every: None,
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

    /// Takes a profile of the sampled allocation sites ([`profile`](crate::profile)) on the
    /// first tick and then every `every` (rounded up to whole ticks), and carries it in that
    /// tick's [`Sample::profile`](super::Sample::profile), trimmed to 16 sites per scope (see
    /// [`Profile::trimmed`](crate::Profile::trimmed)). Off by default: a sampler then takes a
    /// profile only when a leak is first suspected. The first profile reads the binary's symbols, which takes memory
    /// (booked to the crate's own scope) and time on the sampler's thread; later ones resolve
    /// only the addresses not seen yet.
    #[cfg(feature = "profile")]
    pub fn profile_every(mut self, every: Duration) -> Self {
        self.profile_every = Some(every);
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
    /// with the sampler's tick lock held: it must not call into this sampler or [`monitor`](super::monitor).
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
        if self
            .profile_every
            .is_some_and(|every| every < self.interval)
        {
            return Err(invalid(
                "profile_every",
                "must be at least one interval: a profile is taken on a tick",
            ));
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
            profile_every: self.profile_every,
            profiles: std::collections::VecDeque::new(),
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
