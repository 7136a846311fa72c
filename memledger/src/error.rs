//! The facade's [`Error`]: what can go wrong on the cold paths that configure the books.

use core::fmt;

use crate::books::id::MAX_SCOPES;
use crate::sampling::point::{MAX_RATE, MIN_RATE};

/// What went wrong configuring the books: a scope's limit, or the sampling (the allocation path
/// never returns errors).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A scope could not be registered: the table of [`MAX_SCOPES`] ids is
    /// full.
    ScopeTableFull {
        /// The scope's path.
        path: String,
    },
    /// A scope limit was asked for, but the crate was built without the `enforce` feature.
    EnforcementNotBuilt,
    /// A sampling rate outside [`MIN_RATE`] to
    /// [`MAX_RATE`] (0, which switches sampling off, excepted).
    SampleRate {
        /// The rate asked for, in bytes.
        rate: u64,
    },
    /// Sampling was asked for, but the crate was built without the `sampling` feature.
    SamplingNotBuilt,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::ScopeTableFull { path } => write!(
                f,
                "cannot register scope {path:?}: all {} scope ids are taken",
                MAX_SCOPES
            ),
            Error::EnforcementNotBuilt => f.write_str(
                "scope limits need the `enforce` feature: \
                 memledger = { version = \"0.1\", features = [\"enforce\"] }",
            ),
            Error::SampleRate { rate } => write!(
                f,
                "a sampling rate of {rate} bytes is outside {} to {} bytes: set 0 to switch \
                 sampling off, or a mean number of bytes between samples (512 KiB by default)",
                MIN_RATE, MAX_RATE
            ),
            Error::SamplingNotBuilt => f.write_str(
                "sampled allocation sites need the `sampling` feature: \
                 memledger = { version = \"0.1\", features = [\"sampling\"] }",
            ),
        }
    }
}

impl std::error::Error for Error {}
