//! Budgets: the limits memory is checked against, and the levels they define.

use core::fmt;

use crate::reconcile::process::{physical_memory, CgroupMemory, ReadError};

/// A limit, in bytes or as a fraction of the budget's total.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Limit {
    /// An absolute number of bytes.
    Bytes(u64),
    /// A fraction of the total, from 0 to 1.
    Fraction(f64),
}

impl Limit {
    fn resolve(self, which: &'static str, total: u64) -> Result<u64, BudgetError> {
        match self {
            Limit::Bytes(bytes) => Ok(bytes),
            Limit::Fraction(f) if (0.0..=1.0).contains(&f) => Ok((total as f64 * f) as u64),
            Limit::Fraction(value) => Err(BudgetError::BadFraction { which, value }),
        }
    }
}

/// Why a budget was rejected.
#[derive(Clone, Debug, PartialEq)]
pub enum BudgetError {
    /// Two limits are out of order: each of soft, prompt, hard and total must be at most the next.
    Misordered {
        /// The limit that should be the smaller.
        lower: &'static str,
        /// Its value in bytes.
        lower_bytes: u64,
        /// The limit that should be the larger.
        upper: &'static str,
        /// Its value in bytes.
        upper_bytes: u64,
    },
    /// A fraction outside 0 to 1 (or not a number).
    BadFraction {
        /// Which limit.
        which: &'static str,
        /// The fraction given.
        value: f64,
    },
    /// The total is zero.
    ZeroTotal,
    /// No total was given, and neither the cgroup limit nor the physical memory could be read.
    NoTotal(ReadError),
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BudgetError::Misordered {
                lower,
                lower_bytes,
                upper,
                upper_bytes,
            } => write!(
                f,
                "invalid budget: the {lower} limit ({lower_bytes} bytes) is above the {upper} \
                 limit ({upper_bytes} bytes); limits must satisfy soft <= prompt <= hard <= total"
            ),
            BudgetError::BadFraction { which, value } => write!(
                f,
                "invalid budget: the {which} limit is the fraction {value}, which is not between \
                 0 and 1"
            ),
            BudgetError::ZeroTotal => f.write_str("invalid budget: the total is zero bytes"),
            BudgetError::NoTotal(e) => write!(
                f,
                "invalid budget: no total given and none could be read ({e}); set one with \
                 `Budget::builder().total(bytes)`"
            ),
        }
    }
}

impl std::error::Error for BudgetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BudgetError::NoTotal(e) => Some(e),
            _ => None,
        }
    }
}

/// How close memory is to its limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Level {
    /// Below the soft limit.
    Healthy,
    /// At or above the soft limit, below the prompt threshold.
    Caution,
    /// At or above the prompt threshold, below the hard limit.
    Warning,
    /// At or above the hard limit.
    Critical,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Healthy => "healthy",
            Level::Caution => "caution",
            Level::Warning => "warning",
            Level::Critical => "critical",
        })
    }
}

/// The process's memory budget: a total and three limits within it.
///
/// ```
/// use memledger_monitor::{Budget, Level, Limit};
/// let budget = Budget::builder()
///     .total(8 << 30)
///     .soft(Limit::Fraction(0.70))
///     .prompt(Limit::Fraction(0.85))
///     .hard(Limit::Bytes(7 << 30))
///     .build()
///     .unwrap();
/// assert_eq!(budget.level(1 << 30), Level::Healthy);
/// assert_eq!(budget.level(7 << 30), Level::Critical);
///
/// let err = Budget::builder().total(100).soft(Limit::Bytes(90)).prompt(Limit::Bytes(80)).build();
/// assert!(err.unwrap_err().to_string().contains("soft limit (90 bytes) is above the prompt"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "BudgetFields"))]
pub struct Budget {
    /// All the memory there is: the cgroup limit, the physical memory, or a given figure.
    pub total: u64,
    /// Caution from here on.
    pub soft: u64,
    /// Warning from here on: time to act.
    pub prompt: u64,
    /// Critical from here on.
    pub hard: u64,
}

/// Builds a [`Budget`]; see [`Budget::builder`].
#[derive(Clone, Copy, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BudgetBuilder {
    total: Option<u64>,
    soft: Limit,
    prompt: Limit,
    hard: Limit,
}

impl Budget {
    /// A builder with the default limits: soft at 70 %, prompt at 85 % and hard at 95 % of the
    /// total, and the total read from the machine.
    pub fn builder() -> BudgetBuilder {
        BudgetBuilder {
            total: None,
            soft: Limit::Fraction(0.70),
            prompt: Limit::Fraction(0.85),
            hard: Limit::Fraction(0.95),
        }
    }

    /// The memory this process may use: its cgroup's limit if it has one, else the machine's
    /// physical memory.
    pub fn default_total() -> Result<u64, ReadError> {
        match CgroupMemory::read() {
            Ok(Some(CgroupMemory {
                limit_bytes: Some(limit),
                ..
            })) => Ok(limit.min(physical_memory().unwrap_or(u64::MAX))),
            _ => physical_memory(),
        }
    }

    /// The level of `bytes` against this budget.
    pub fn level(&self, bytes: u64) -> Level {
        if bytes >= self.hard {
            Level::Critical
        } else if bytes >= self.prompt {
            Level::Warning
        } else if bytes >= self.soft {
            Level::Caution
        } else {
            Level::Healthy
        }
    }
}

impl BudgetBuilder {
    /// The total, in bytes (default: [`Budget::default_total`]).
    pub fn total(mut self, bytes: u64) -> Self {
        self.total = Some(bytes);
        self
    }

    /// The soft limit (default 70 % of the total).
    pub fn soft(mut self, limit: Limit) -> Self {
        self.soft = limit;
        self
    }

    /// The prompt threshold (default 85 % of the total).
    pub fn prompt(mut self, limit: Limit) -> Self {
        self.prompt = limit;
        self
    }

    /// The hard limit (default 95 % of the total).
    pub fn hard(mut self, limit: Limit) -> Self {
        self.hard = limit;
        self
    }

    /// Resolves the limits and checks that soft <= prompt <= hard <= total.
    pub fn build(self) -> Result<Budget, BudgetError> {
        let total = match self.total {
            Some(total) => total,
            None => Budget::default_total().map_err(BudgetError::NoTotal)?,
        };
        if total == 0 {
            return Err(BudgetError::ZeroTotal);
        }
        let budget = Budget {
            total,
            soft: self.soft.resolve("soft", total)?,
            prompt: self.prompt.resolve("prompt", total)?,
            hard: self.hard.resolve("hard", total)?,
        };
        let order = [
            ("soft", budget.soft),
            ("prompt", budget.prompt),
            ("hard", budget.hard),
            ("total", budget.total),
        ];
        for pair in order.windows(2) {
            let ((lower, lower_bytes), (upper, upper_bytes)) = (pair[0], pair[1]);
            if lower_bytes > upper_bytes {
                return Err(BudgetError::Misordered {
                    lower,
                    lower_bytes,
                    upper,
                    upper_bytes,
                });
            }
        }
        Ok(budget)
    }
}

/// A budget for one scope: a soft and a hard limit on its live bytes, optionally enforced.
///
/// ```
/// let budget = memledger_monitor::ScopeBudget::new(48 << 20, 64 << 20).unwrap();
/// assert_eq!(budget.level(50 << 20), memledger_monitor::Level::Caution);
/// assert!(memledger_monitor::ScopeBudget::new(64, 48).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "ScopeBudgetFields"))]
pub struct ScopeBudget {
    /// Caution from here on.
    pub soft: u64,
    /// Critical from here on; with `enforce`, allocations past it fail.
    pub hard: u64,
    /// Whether allocations that would pass `hard` fail (see [`limit_scope`](memledger::limit_scope)).
    pub enforce: bool,
}

/// A [`Budget`] as read, checked by its builder before it becomes one: a budget read back from
/// JSON holds the same guarantees as one built (a non-zero total, soft <= prompt <= hard <= total).
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct BudgetFields {
    total: u64,
    soft: u64,
    prompt: u64,
    hard: u64,
}

#[cfg(feature = "serde")]
impl TryFrom<BudgetFields> for Budget {
    type Error = BudgetError;

    fn try_from(f: BudgetFields) -> Result<Budget, BudgetError> {
        Budget::builder()
            .total(f.total)
            .soft(Limit::Bytes(f.soft))
            .prompt(Limit::Bytes(f.prompt))
            .hard(Limit::Bytes(f.hard))
            .build()
    }
}

/// A [`ScopeBudget`] as read, checked by [`ScopeBudget::new`].
#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
struct ScopeBudgetFields {
    soft: u64,
    hard: u64,
    enforce: bool,
}

#[cfg(feature = "serde")]
impl TryFrom<ScopeBudgetFields> for ScopeBudget {
    type Error = BudgetError;

    fn try_from(f: ScopeBudgetFields) -> Result<ScopeBudget, BudgetError> {
        let budget = ScopeBudget::new(f.soft, f.hard)?;
        Ok(ScopeBudget {
            enforce: f.enforce,
            ..budget
        })
    }
}

impl ScopeBudget {
    /// A budget of `soft` and `hard` bytes, not enforced.
    pub fn new(soft: u64, hard: u64) -> Result<ScopeBudget, BudgetError> {
        if soft > hard {
            return Err(BudgetError::Misordered {
                lower: "soft",
                lower_bytes: soft,
                upper: "hard",
                upper_bytes: hard,
            });
        }
        if hard == 0 {
            return Err(BudgetError::ZeroTotal);
        }
        Ok(ScopeBudget {
            soft,
            hard,
            enforce: false,
        })
    }

    /// The same budget, with the hard limit enforced on allocations.
    #[must_use]
    pub fn enforced(self) -> ScopeBudget {
        ScopeBudget {
            enforce: true,
            ..self
        }
    }

    /// The level of `bytes`: healthy, caution from `soft`, critical from `hard`.
    pub fn level(&self, bytes: u64) -> Level {
        if bytes >= self.hard {
            Level::Critical
        } else if bytes >= self.soft {
            Level::Caution
        } else {
            Level::Healthy
        }
    }
}
