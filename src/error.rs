//! The crate's error type for its cold paths (the allocation path never returns errors).

use core::fmt;

use crate::budget::BudgetError;
use crate::process::ReadError;

/// What went wrong outside the allocation path.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A reading of the process's memory failed.
    Read(ReadError),
    /// A budget was rejected.
    Budget(BudgetError),
    /// A scope could not be registered: the table of [`MAX_SCOPES`](crate::MAX_SCOPES) ids is
    /// full.
    ScopeTableFull {
        /// The scope's path.
        path: String,
    },
    /// A setting was rejected.
    InvalidSetting {
        /// Which setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The sampler thread could not be started.
    Spawn(std::io::Error),
    /// A scope limit was asked for, but the crate was built without the `enforce` feature.
    EnforcementNotBuilt,
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
            Error::ScopeTableFull { path } => write!(
                f,
                "cannot register scope {path:?}: all {} scope ids are taken",
                crate::MAX_SCOPES
            ),
            Error::InvalidSetting { setting, reason } => {
                write!(f, "invalid sampler setting `{setting}`: {reason}")
            }
            Error::Spawn(e) => write!(f, "cannot start the sampler thread: {e}"),
            Error::EnforcementNotBuilt => f.write_str(
                "scope limits need the `enforce` feature: \
                 memledger = { version = \"0.1\", features = [\"enforce\"] }",
            ),
            Error::MonitorRunning => f.write_str(
                "the process-wide monitor is already running; stop it first with \
                 `memledger::monitor::stop()`",
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
