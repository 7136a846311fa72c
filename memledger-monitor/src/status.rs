//! Budget status: where memory stands against its limits, what grows, and where to look.

use core::fmt;
use std::time::SystemTime;

use crate::budget::{Budget, Level, ScopeBudget};
use crate::growth::{GrowthRate, SuspectedLeak};
use crate::reconcile::BreakdownEntry;
use memledger::__private::{human_bytes, percent};
use memledger::Snapshot;
use memledger::{OWN_SCOPE, UNSCOPED};

/// Which figure a budget is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BudgetBasis {
    /// The process's resident set (the default): what the machine runs out of.
    #[default]
    Rss,
    /// The cgroup's usage: what the OOM killer of a container looks at.
    Cgroup,
    /// The ledger's live bytes: the Rust heap as requested.
    Ledger,
}

impl fmt::Display for BudgetBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetBasis::Rss => "RSS",
            BudgetBasis::Cgroup => "cgroup usage",
            BudgetBasis::Ledger => "ledger",
        })
    }
}

/// One scope against its own budget.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ScopeStatus {
    /// The scope's path.
    pub path: String,
    /// Its live bytes.
    pub live_bytes: u64,
    /// Its budget.
    pub budget: ScopeBudget,
    /// Healthy, caution (from the soft limit) or critical (from the hard limit).
    pub level: Level,
    /// `live_bytes` as a percentage of the hard limit.
    pub percent_of_hard: f64,
    /// Allocations refused by the enforced limit so far.
    pub refused_allocations: u64,
}

/// Why a scope is worth a look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Reason {
    /// It holds the most live bytes.
    Largest,
    /// It grows fastest over the window.
    FastestGrowing,
    /// It grows steadily: a suspected leak.
    SuspectedLeak,
    /// It is past its own soft or hard limit.
    OverScopeBudget,
}

/// A scope to look at, and why.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Recommendation {
    /// The scope's path.
    pub path: String,
    /// Why.
    pub reason: Reason,
    /// Its live bytes.
    pub live_bytes: u64,
    /// Its growth over the window, in bytes per second.
    pub growth_per_sec: f64,
    /// The same, in words.
    pub message: String,
}

/// Where memory stands: the level against the budget, the figures behind it, and what to look
/// at.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Status {
    /// When it was computed.
    pub at: SystemTime,
    /// Healthy, caution, warning or critical.
    pub level: Level,
    /// The figure checked against the budget. Falls back to [`BudgetBasis::Ledger`] when the
    /// configured one could not be read (`note` says why).
    pub measure: BudgetBasis,
    /// That figure now, in bytes.
    pub current_bytes: u64,
    /// The budget.
    pub budget: Budget,
    /// `current_bytes` as a percentage of the total.
    pub percent_of_total: f64,
    /// ... of the soft limit.
    pub percent_of_soft: f64,
    /// ... of the prompt threshold.
    pub percent_of_prompt: f64,
    /// ... of the hard limit.
    pub percent_of_hard: f64,
    /// Bytes left before the total.
    pub available_bytes: u64,
    /// The RSS by measured bytes (empty when the RSS could not be read).
    pub breakdown: Vec<BreakdownEntry>,
    /// Growth of the measured figure.
    pub growth: GrowthRate,
    /// Scopes with budgets of their own.
    pub scopes: Vec<ScopeStatus>,
    /// Scopes to look at, the most pressing first.
    pub recommendations: Vec<Recommendation>,
    /// Why the measure fell back, if it did.
    pub note: Option<String>,
    /// One line for humans.
    pub summary: String,
}

/// What [`Status::evaluate`] needs to know.
pub(crate) struct StatusInputs<'a> {
    pub budget: Budget,
    pub measure: BudgetBasis,
    pub current_bytes: u64,
    pub note: Option<String>,
    pub snapshot: &'a Snapshot,
    pub breakdown: Vec<BreakdownEntry>,
    pub growth: GrowthRate,
    /// Per scope path: growth over the window.
    pub scope_growth: &'a [(String, GrowthRate)],
    pub scope_budgets: &'a [(String, ScopeBudget)],
    pub leaks: &'a [SuspectedLeak],
    /// Growth over less time than this is too young to recommend a scope for.
    pub min_span: std::time::Duration,
}

impl Status {
    pub(crate) fn evaluate(inputs: StatusInputs<'_>) -> Status {
        let StatusInputs {
            budget,
            measure,
            current_bytes,
            note,
            snapshot,
            breakdown,
            growth,
            scope_growth,
            scope_budgets,
            leaks,
            min_span,
        } = inputs;
        let level = budget.level(current_bytes);
        let live = |path: &str| snapshot.scope(path).map_or(0, |s| s.live_bytes);
        let rate_of = |path: &str| {
            scope_growth
                .iter()
                .find(|(p, _)| p == path)
                .map_or(0.0, |(_, g)| g.window)
        };
        let scopes: Vec<ScopeStatus> = scope_budgets
            .iter()
            .map(|(path, scope_budget)| {
                let stats = snapshot.scope(path);
                let live_bytes = stats.map_or(0, |s| s.live_bytes);
                ScopeStatus {
                    path: path.clone(),
                    live_bytes,
                    budget: *scope_budget,
                    level: scope_budget.level(live_bytes),
                    percent_of_hard: percent(live_bytes, scope_budget.hard),
                    refused_allocations: stats.map_or(0, |s| s.refused_allocations),
                }
            })
            .collect();

        let mut recommendations = Vec::new();
        for scope in scopes.iter().filter(|s| s.level > Level::Healthy) {
            let limit = if scope.level == Level::Critical {
                "hard"
            } else {
                "soft"
            };
            recommendations.push(Recommendation {
                path: scope.path.clone(),
                reason: Reason::OverScopeBudget,
                live_bytes: scope.live_bytes,
                growth_per_sec: rate_of(&scope.path),
                message: format!(
                    "{} holds {}, past its {limit} limit ({:.0}% of its hard limit)",
                    scope.path,
                    human_bytes(scope.live_bytes),
                    scope.percent_of_hard
                ),
            });
        }
        for leak in leaks {
            recommendations.push(Recommendation {
                path: leak.path.clone(),
                reason: Reason::SuspectedLeak,
                live_bytes: leak.live_bytes,
                growth_per_sec: leak.rate.window,
                message: format!(
                    "{} grows steadily at {}/s over {:.0} s (fit {:.2}): suspected leak{}",
                    leak.path,
                    human_bytes(leak.rate.window.max(0.0) as u64),
                    leak.rate.span.as_secs_f64(),
                    leak.rate.fit,
                    leak_sites(&leak.top_sites)
                ),
            });
        }
        let user_scope = |path: &str| path != UNSCOPED && path != OWN_SCOPE;
        if let Some((path, rate)) = scope_growth
            .iter()
            .filter(|(p, g)| user_scope(p) && g.window > 0.0 && g.span >= min_span)
            .max_by(|a, b| a.1.window.total_cmp(&b.1.window))
        {
            if !recommendations.iter().any(|r| &r.path == path) {
                recommendations.push(Recommendation {
                    path: path.clone(),
                    reason: Reason::FastestGrowing,
                    live_bytes: live(path),
                    growth_per_sec: rate.window,
                    message: format!(
                        "{path} grows fastest: {}/s over {:.0} s",
                        human_bytes(rate.window as u64),
                        rate.span.as_secs_f64()
                    ),
                });
            }
        }
        if let Some(largest) = snapshot
            .scopes()
            .iter()
            .filter(|s| user_scope(&s.path) && s.live_bytes > 0)
            .max_by_key(|s| s.live_bytes)
        {
            if !recommendations.iter().any(|r| r.path == largest.path) {
                recommendations.push(Recommendation {
                    path: largest.path.clone(),
                    reason: Reason::Largest,
                    live_bytes: largest.live_bytes,
                    growth_per_sec: rate_of(&largest.path),
                    message: format!(
                        "{} is the largest scope: {} ({:.0}% of the ledger)",
                        largest.path,
                        human_bytes(largest.live_bytes),
                        percent(largest.live_bytes, snapshot.total_live_bytes())
                    ),
                });
            }
        }

        let mut summary = format!(
            "{level}: {measure} {} of {} ({:.0}%), soft {}, prompt {}, hard {}",
            human_bytes(current_bytes),
            human_bytes(budget.total),
            percent(current_bytes, budget.total),
            human_bytes(budget.soft),
            human_bytes(budget.prompt),
            human_bytes(budget.hard),
        );
        if growth.samples >= 2 {
            let sign = if growth.window < 0.0 { "-" } else { "+" };
            summary.push_str(&format!(
                ", {sign}{}/s over {:.1} s",
                human_bytes(growth.window.abs() as u64),
                growth.span.as_secs_f64()
            ));
        }
        if let Some(first) = recommendations.first() {
            summary.push_str(&format!("; look at {}", first.path));
        }
        if let Some(note) = &note {
            summary.push_str(&format!(" ({note})"));
        }
        Status {
            at: SystemTime::now(),
            level,
            measure,
            current_bytes,
            budget,
            percent_of_total: percent(current_bytes, budget.total),
            percent_of_soft: percent(current_bytes, budget.soft),
            percent_of_prompt: percent(current_bytes, budget.prompt),
            percent_of_hard: percent(current_bytes, budget.hard),
            available_bytes: budget.total.saturating_sub(current_bytes),
            breakdown,
            growth,
            scopes,
            recommendations,
            note,
            summary,
        }
    }

    /// Below the soft limit.
    pub fn is_healthy(&self) -> bool {
        self.level == Level::Healthy
    }

    /// At or past the soft limit, below the prompt threshold.
    pub fn is_caution(&self) -> bool {
        self.level == Level::Caution
    }

    /// At or past the prompt threshold, below the hard limit.
    pub fn is_warning(&self) -> bool {
        self.level == Level::Warning
    }

    /// At or past the hard limit.
    pub fn is_critical(&self) -> bool {
        self.level == Level::Critical
    }

    /// At or past the soft limit.
    pub fn exceeds_soft(&self) -> bool {
        self.current_bytes >= self.budget.soft
    }

    /// At or past the prompt threshold.
    pub fn exceeds_prompt(&self) -> bool {
        self.current_bytes >= self.budget.prompt
    }

    /// At or past the hard limit.
    pub fn exceeds_hard(&self) -> bool {
        self.current_bytes >= self.budget.hard
    }
}

/// `"; growing at: f (file:line) +1.2 MB, ..."` for a leak's top sites, or nothing.
fn leak_sites(sites: &[crate::growth::LeakSite]) -> String {
    if sites.is_empty() {
        return String::new();
    }
    let named: Vec<String> = sites
        .iter()
        .map(|s| format!("{} +{}", s.site, human_bytes(s.growth_bytes.max(0) as u64)))
        .collect();
    format!("; growing at: {}", named.join(", "))
}

/// The summary line, then the recommendations and the scope budgets.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary)?;
        for r in &self.recommendations {
            write!(f, "\n  - {}", r.message)?;
        }
        for s in &self.scopes {
            write!(
                f,
                "\n  scope {}: {} ({}, {:.0}% of its hard limit{})",
                s.path,
                human_bytes(s.live_bytes),
                s.level,
                s.percent_of_hard,
                if s.refused_allocations > 0 {
                    format!(", {} allocations refused", s.refused_allocations)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}
