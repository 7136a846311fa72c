//! The sampler thread: one tick reads the books and the layers under them, updates the history and
//! the growth fits, checks the budgets and hands the events to every subscriber.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::builder::MemorySource;
use super::{lock_worker, Event, Sample, Shared};
use crate::budget::{Budget, Level, ScopeBudget};
use crate::growth::{GrowthRate, LeakDetection, SuspectedLeak};
use crate::history::HistoryEntry;
use crate::reconcile::allocator::AllocatorStats;
use crate::reconcile::process::{CgroupMemory, ProcessMemory, ReadError};
use crate::reconcile::Reconciliation;
use crate::status::{BudgetBasis, Status, StatusInputs};

/// The sampler thread's own state.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) interval: Duration,
    pub(super) budget: Budget,
    pub(super) measure: BudgetBasis,
    pub(super) scope_budgets: Vec<(String, ScopeBudget)>,
    pub(super) leak_detection: LeakDetection,
    pub(super) memory_source: Option<MemorySource>,
    pub(super) started: Instant,
    pub(super) level: Level,
    pub(super) scope_levels: Vec<Level>,
    pub(super) suspected: Vec<String>,
    pub(super) profile_every: Option<Duration>,
    /// Profiles taken, the oldest first: the baselines of the growth by site.
    #[cfg_attr(not(feature = "profile"), allow(dead_code))]
    pub(super) profiles: std::collections::VecDeque<(Duration, ProfileHandle)>,
}

#[cfg(feature = "profile")]
pub(super) type ProfileHandle = Arc<crate::profile::Profile>;
#[cfg(not(feature = "profile"))]
pub(super) type ProfileHandle = ();

/// Profiles a sampler keeps as baselines.
#[cfg(feature = "profile")]
const KEPT_PROFILES: usize = 6;
/// Sites per scope a sampler's profiles keep.
#[cfg(feature = "profile")]
const PROFILE_SITES: usize = 16;
/// Sites a suspected leak names.
#[cfg(feature = "profile")]
const LEAK_SITES: usize = 3;

impl Worker {
    /// The sampler thread: a tick, then a wait for the rest of the interval or for the stop.
    pub(super) fn run(worker: &Mutex<Worker>, stopped: Receiver<()>) {
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
                #[cfg(not(memledger_mutant = "source_panic_uncaught"))]
                let memory = std::panic::catch_unwind(std::panic::AssertUnwindSafe(source))
                    .unwrap_or_else(|_| {
                        Err(ReadError::Io {
                            source: "the sampler's memory source".to_string(),
                            message: "it panicked".to_string(),
                        })
                    })?;
                // Seeded bug (`.ci/mutants`): the source's panic is not caught.
                #[cfg(memledger_mutant = "source_panic_uncaught")]
                let memory = source()?;
                // Seeded bug (`.ci/mutants`): a nonsense reading is taken as it is.
                #[cfg(not(memledger_mutant = "nonsense_reading_accepted"))]
                memory.validate()?;
                Ok(memory)
            }
            None => ProcessMemory::read(),
        }
    }

    pub(super) fn tick(&mut self) -> Arc<Sample> {
        let began = Instant::now();
        let at = SystemTime::now();
        let uptime = self.started.elapsed();
        // Before the readings, so that they show what the decay returned.
        crate::reconcile::arenas::decay();
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
                    top_sites: Vec::new(),
                });
            }
            scope_growth.push((scope.path.clone(), rate));
        }
        scope_growth.sort_by(|a, b| b.1.window.total_cmp(&a.1.window));
        // Resolving a profile's symbols may take a while: readers of the state are not kept
        // waiting for it.
        drop(state);
        #[cfg(feature = "profile")]
        let profile = self.profile(uptime, &mut leaks);
        #[cfg(not(feature = "profile"))]
        let _ = self.profile_every;
        let mut state = self.shared.lock();
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
            #[cfg(feature = "profile")]
            profile,
        });
        state.stats.ticks += 1;
        state.latest = Some(Arc::clone(&sample));
        let spent = began.elapsed();
        state.stats.last_tick = spent;
        state.stats.total_tick_time += spent;
        events.insert(0, Event::Sample(Arc::clone(&sample)));
        let mut dropped = 0;
        #[cfg(memledger_mutant = "a_gone_reader_ends_all")]
        let before = state.subscribers.len();
        state.subscribers.retain(|subscriber| {
            events
                .iter()
                .all(|e| subscriber.send(e.clone(), &mut dropped))
        });
        // Seeded bug (`.ci/mutants`): a reader that is gone ends every subscription.
        #[cfg(memledger_mutant = "a_gone_reader_ends_all")]
        if state.subscribers.len() < before {
            state.subscribers.clear();
        }
        state.stats.dropped_events += dropped;
        sample
    }
}

#[cfg(feature = "profile")]
impl Worker {
    /// Takes a profile if one is due (every `profile_every`, and when a leak is suspected that
    /// was not before), and names the top growing sites of every suspected leak from the latest
    /// profile against the one taken about a leak window earlier.
    fn profile(&mut self, uptime: Duration, leaks: &mut [SuspectedLeak]) -> Option<ProfileHandle> {
        let last = self.profiles.back().map(|(t, _)| *t);
        let periodic = self
            .profile_every
            .is_some_and(|every| last.is_none_or(|t| uptime.saturating_sub(t) >= every));
        let new_leak = leaks.iter().any(|l| !self.suspected.contains(&l.path));
        // Kept trimmed: a whole profile holds every stack ever sampled, each with its frames.
        let taken = (periodic || new_leak)
            .then(|| Arc::new(crate::profile::profile().trimmed(PROFILE_SITES)));
        if let Some(p) = &taken {
            if self.profiles.len() == KEPT_PROFILES {
                self.profiles.pop_front();
            }
            self.profiles.push_back((uptime, Arc::clone(p)));
        }
        if let Some((_, latest)) = self.profiles.back() {
            let window = self.leak_detection.window;
            // The newest profile at least a window old, else the oldest one there is.
            let baseline = self
                .profiles
                .iter()
                .rev()
                .skip(1)
                .find(|(t, _)| uptime.saturating_sub(*t) >= window)
                .or_else(|| self.profiles.iter().rev().nth(1).and(self.profiles.front()))
                .map(|(_, p)| p);
            let compared = match baseline {
                Some(baseline) => latest.since(baseline),
                None => (**latest).clone(),
            };
            for leak in leaks.iter_mut() {
                if let Some(scope) = compared.scope(&leak.path) {
                    leak.top_sites = scope
                        .growing_sites(LEAK_SITES)
                        .into_iter()
                        .map(|site| crate::growth::LeakSite {
                            site: site.label(),
                            live_bytes: site.live.bytes,
                            growth_bytes: site.live_change,
                        })
                        .collect();
                }
            }
        }
        taken
    }
}

/// CPU time used by the calling thread.
#[cfg(target_os = "linux")]
pub(super) fn thread_cpu_time() -> Option<Duration> {
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
pub(super) fn thread_cpu_time() -> Option<Duration> {
    None
}
