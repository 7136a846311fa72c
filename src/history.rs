//! The sampler's history: a ring of compact entries, trimmed by age and by count.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::budget::Level;
use crate::process::ReadError;
use crate::snapshot::Snapshot;

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

/// An entry as stored: scope figures by id, paths shared by the whole history.
struct Stored {
    at: SystemTime,
    uptime: Duration,
    ledger_bytes: u64,
    rss_bytes: Option<u64>,
    allocated_bytes: Option<u64>,
    resident_bytes: Option<u64>,
    measured_bytes: u64,
    level: Level,
    read_error: Option<ReadError>,
    /// Live bytes by scope id.
    live: Box<[u64]>,
}

/// What a tick records.
pub(crate) struct Record<'a> {
    pub at: SystemTime,
    pub uptime: Duration,
    pub snapshot: &'a Snapshot,
    pub rss_bytes: Option<u64>,
    pub allocated_bytes: Option<u64>,
    pub resident_bytes: Option<u64>,
    pub measured_bytes: u64,
    pub level: Level,
    pub read_error: Option<ReadError>,
}

/// The ring. Its memory is about `64 + 8 × scopes` bytes per entry.
pub(crate) struct History {
    entries: VecDeque<Stored>,
    /// Scope paths by id (ids never change meaning, so one table serves every entry).
    paths: Vec<Arc<str>>,
    capacity: usize,
    retention: Duration,
}

impl History {
    pub(crate) fn new(capacity: usize, retention: Duration) -> History {
        History {
            entries: VecDeque::with_capacity(capacity.min(4096)),
            paths: Vec::new(),
            capacity: capacity.max(1),
            retention,
        }
    }

    pub(crate) fn push(&mut self, record: Record<'_>) {
        let scopes = record.snapshot.scopes();
        for scope in &scopes[self.paths.len().min(scopes.len())..] {
            self.paths.push(Arc::from(scope.path.as_str()));
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        while self
            .entries
            .front()
            .is_some_and(|e| record.uptime.saturating_sub(e.uptime) > self.retention)
        {
            self.entries.pop_front();
        }
        self.entries.push_back(Stored {
            at: record.at,
            uptime: record.uptime,
            ledger_bytes: record.snapshot.total_live_bytes(),
            rss_bytes: record.rss_bytes,
            allocated_bytes: record.allocated_bytes,
            resident_bytes: record.resident_bytes,
            measured_bytes: record.measured_bytes,
            level: record.level,
            read_error: record.read_error,
            live: scopes.iter().map(|s| s.live_bytes).collect(),
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn expand(&self, stored: &Stored) -> HistoryEntry {
        HistoryEntry {
            at: stored.at,
            uptime: stored.uptime,
            ledger_bytes: stored.ledger_bytes,
            rss_bytes: stored.rss_bytes,
            allocated_bytes: stored.allocated_bytes,
            resident_bytes: stored.resident_bytes,
            measured_bytes: stored.measured_bytes,
            level: stored.level,
            read_error: stored.read_error.clone(),
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
            .filter(|e| e.at >= from && e.at <= to)
            .map(|e| self.expand(e))
            .collect()
    }

    /// `(seconds of uptime, value)` over the last `window` for the figure `value` picks.
    fn series(&self, window: Duration, value: impl Fn(&Stored) -> Option<u64>) -> Vec<(f64, f64)> {
        let Some(newest) = self.entries.back() else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|e| newest.uptime.saturating_sub(e.uptime) <= window)
            .filter_map(|e| value(e).map(|v| (e.uptime.as_secs_f64(), v as f64)))
            .collect()
    }

    /// The series of one scope's live bytes.
    pub(crate) fn scope_series(&self, id: usize, window: Duration) -> Vec<(f64, f64)> {
        self.series(window, |e| Some(e.live.get(id).copied().unwrap_or(0)))
    }

    /// The series of the figure the budget measures.
    pub(crate) fn measured_series(&self, window: Duration) -> Vec<(f64, f64)> {
        self.series(window, |e| Some(e.measured_bytes))
    }
}
