//! The sampler's history: a ring of compact entries, trimmed by age and by count.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::budget::Level;
use crate::growth::{GrowthRate, SlidingFit};
use crate::reconcile::process::ReadError;
use memledger::Snapshot;

/// One sampler tick as kept in the history.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HistoryEntry {
    /// When the tick ran.
    pub at: SystemTime,
    /// Time since the sampler started (monotonic).
    pub uptime: Duration,
    /// Live bytes of the ledger.
    pub ledger_bytes: u64,
    /// The process's RSS, `None` where the reading failed (see `read_error`).
    pub rss_bytes: Option<u64>,
    /// jemalloc `allocated`, where available.
    pub allocated_bytes: Option<u64>,
    /// jemalloc `resident`, where available.
    pub resident_bytes: Option<u64>,
    /// The figure the budget was checked against (see [`crate::Status::measure`]).
    pub measured_bytes: u64,
    /// The budget level.
    pub level: Level,
    /// Why the RSS is missing, if it is: a gap in the history, recorded rather than skipped.
    pub read_error: Option<ReadError>,
    /// Live bytes of every scope that held any, by path.
    pub scopes: Vec<ScopeSample>,
}

/// A scope's live bytes in a [`HistoryEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeSample {
    /// The scope's path.
    pub path: String,
    /// Its live bytes.
    pub live_bytes: u64,
}

impl HistoryEntry {
    /// Live bytes of the scope at `path` in this entry (zero if it held none).
    pub fn live_bytes(&self, path: &str) -> u64 {
        self.scopes
            .iter()
            .find(|s| s.path == path)
            .map_or(0, |s| s.live_bytes)
    }
}

/// An entry as stored: the figures of the tick without its scope list, and the scopes' live
/// bytes by id (paths are shared by the whole history).
struct Stored {
    entry: HistoryEntry,
    live: Box<[u64]>,
}

/// The ring. Its memory is about `200 + 8 × scopes` bytes per entry.
pub(crate) struct History {
    entries: VecDeque<Stored>,
    /// Scope paths by id (ids never change meaning, so one table serves every entry).
    paths: Vec<Arc<str>>,
    capacity: usize,
    retention: Duration,
    /// The growth window, and the least-squares sums of the entries inside it.
    window: Duration,
    fit_scopes: SlidingFit,
    fit_measured: SlidingFit,
    /// How many of the oldest entries lie before the window (already out of the sums).
    outside: usize,
}

impl History {
    pub(crate) fn new(capacity: usize, retention: Duration, window: Duration) -> History {
        History {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            paths: Vec::new(),
            capacity: capacity.max(1),
            retention,
            window,
            fit_scopes: SlidingFit::default(),
            fit_measured: SlidingFit::default(),
            outside: 0,
        }
    }

    /// Drops the oldest entry, taking it out of the sums if it is still in the window.
    fn pop_oldest(&mut self) {
        if self.outside > 0 {
            self.outside -= 1;
        } else if !self.entries.is_empty() {
            self.fit_update(-1, 0);
        }
        self.entries.pop_front();
    }

    /// Records a tick: `entry` without its scope list, and the snapshot it was taken from.
    pub(crate) fn push(&mut self, entry: HistoryEntry, snapshot: &Snapshot) {
        let scopes = snapshot.scopes();
        for scope in &scopes[self.paths.len().min(scopes.len())..] {
            self.paths.push(Arc::from(scope.path.as_str()));
        }
        let uptime = entry.uptime;
        while self.entries.len() >= self.capacity {
            self.pop_oldest();
        }
        while self
            .entries
            .front()
            .is_some_and(|e| uptime.saturating_sub(e.entry.uptime) > self.retention)
        {
            self.pop_oldest();
        }
        self.entries.push_back(Stored {
            entry,
            live: scopes.iter().map(|s| s.live_bytes).collect(),
        });
        self.fit_update(1, self.entries.len() - 1);
        while self.outside < self.entries.len()
            && uptime.saturating_sub(self.entries[self.outside].entry.uptime) > self.window
        {
            self.fit_update(-1, self.outside);
            self.outside += 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn expand(&self, stored: &Stored) -> HistoryEntry {
        HistoryEntry {
            scopes: stored
                .live
                .iter()
                .zip(&self.paths)
                .filter(|(&live, _)| live > 0)
                .map(|(&live_bytes, path)| ScopeSample {
                    path: path.to_string(),
                    live_bytes,
                })
                .collect(),
            ..stored.entry.clone()
        }
    }

    /// The last `n` entries, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<HistoryEntry> {
        let skip = self.entries.len().saturating_sub(n);
        self.entries
            .iter()
            .skip(skip)
            .map(|e| self.expand(e))
            .collect()
    }

    /// Entries with `from <= at <= to`, oldest first.
    pub(crate) fn range(&self, from: SystemTime, to: SystemTime) -> Vec<HistoryEntry> {
        self.entries
            .iter()
            .filter(|e| e.entry.at >= from && e.entry.at <= to)
            .map(|e| self.expand(e))
            .collect()
    }

    /// The growth of scope `id` over the window, `None` if it held nothing in it.
    pub(crate) fn scope_growth(&self, id: usize) -> Option<GrowthRate> {
        if self.fit_scopes.is_zero(id) {
            return None;
        }
        let (window, fit) = self.fit_scopes.fit(id);
        Some(self.rate(window, fit, |e| e.live.get(id).copied().unwrap_or(0)))
    }

    /// The growth of the measured figure over the window.
    pub(crate) fn measured_growth(&self) -> GrowthRate {
        let (window, fit) = self.fit_measured.fit(0);
        self.rate(window, fit, |e| e.entry.measured_bytes)
    }

    fn rate(&self, window: f64, fit: f64, value: impl Fn(&Stored) -> u64) -> GrowthRate {
        let len = self.entries.len();
        let since_last = match (self.entries.get(len.wrapping_sub(2)), self.entries.back()) {
            (Some(a), Some(b)) if b.entry.uptime > a.entry.uptime => {
                (value(b) as f64 - value(a) as f64)
                    / (b.entry.uptime - a.entry.uptime).as_secs_f64()
            }
            _ => 0.0,
        };
        let span = match (self.entries.get(self.outside), self.entries.back()) {
            (Some(first), Some(last)) => last.entry.uptime.saturating_sub(first.entry.uptime),
            _ => Duration::ZERO,
        };
        GrowthRate {
            since_last,
            window,
            fit,
            samples: self.fit_measured.samples(),
            span,
        }
    }

    /// Adds an entry to the window's sums (`sign == 1`) or takes it out (`-1`).
    fn fit_update(&mut self, sign: i128, index: usize) {
        let entry = &self.entries[index];
        let t = entry.entry.uptime.as_millis() as u64;
        self.fit_scopes.update(sign, t, entry.live.iter().copied());
        self.fit_measured
            .update(sign, t, core::iter::once(entry.entry.measured_bytes));
    }
}
