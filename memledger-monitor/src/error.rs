//! The crate's error type for its cold paths (the allocation path never returns errors).

use core::fmt;

use crate::budget::BudgetError;
use crate::reconcile::process::ReadError;

/// What went wrong outside the allocation path.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A reading of the process's memory failed.
    Read(ReadError),
    /// A budget was rejected.
    Budget(BudgetError),
    /// A scope's limit could not be set (an enforced [`ScopeBudget`](crate::ScopeBudget)): its
    /// scope could not be registered, or the books were built without enforcement.
    Scope(memledger::Error),
    /// A setting was rejected.
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The sampler thread could not be started.
    Spawn(std::io::Error),
    /// A sampler is already running as the process-wide monitor.
    MonitorRunning,
    /// A file could not be created, written or read.
    Io {
        /// The file (empty for a writer that is not a file).
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// JSON that could not be read as the type asked for.
    #[cfg(feature = "serde")]
    Json(serde_json::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Read(e) => e.fmt(f),
            Error::Budget(e) => e.fmt(f),
            Error::Scope(e) => e.fmt(f),
            Error::InvalidSetting { setting, reason } => {
                write!(f, "invalid sampler setting `{setting}`: {reason}")
            }
            Error::Spawn(e) => write!(f, "cannot start the sampler thread: {e}"),
            Error::MonitorRunning => f.write_str(
                "the process-wide monitor is already running; stop it first with \
                 `memledger_monitor::monitor::stop()`",
            ),
            Error::Io { path, error } if path.as_os_str().is_empty() => {
                write!(f, "cannot write: {error}")
            }
            Error::Io { path, error } => write!(f, "{}: {error}", path.display()),
            #[cfg(feature = "serde")]
            Error::Json(e) => write!(f, "invalid JSON: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read(e) => Some(e),
            Error::Budget(e) => Some(e),
            Error::Scope(e) => Some(e),
            Error::Spawn(e) => Some(e),
            Error::Io { error, .. } => Some(error),
            #[cfg(feature = "serde")]
            Error::Json(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ReadError> for Error {
    fn from(e: ReadError) -> Self {
        Error::Read(e)
    }
}

impl From<BudgetError> for Error {
    fn from(e: BudgetError) -> Self {
        Error::Budget(e)
    }
}

impl From<memledger::Error> for Error {
    fn from(e: memledger::Error) -> Self {
        Error::Scope(e)
    }
}
