//! JSON in and out for the crate's data (feature `serde`).

use crate::error::Error;

/// Writes `value` (a [`Snapshot`](memledger::Snapshot), [`Reconciliation`](crate::Reconciliation),
/// [`Status`](crate::Status), [`HistoryEntry`](crate::HistoryEntry), [`Sample`](crate::Sample)...)
/// as JSON.
///
/// ```
/// let snap = memledger::snapshot();
/// let json = memledger_monitor::to_json(&snap).unwrap();
/// let back: memledger::Snapshot = memledger_monitor::from_json(&json).unwrap();
/// assert_eq!(back, snap);
/// ```
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(Error::Json)
}

/// Reads a value written by [`to_json`]. Malformed or inconsistent input is an [`Error::Json`]
/// that says where and what, never a panic.
///
/// ```
/// let err = memledger_monitor::from_json::<memledger::Snapshot>(r#"{"scopes": 3}"#).unwrap_err();
/// assert!(err.to_string().starts_with("invalid JSON"));
/// ```
pub fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(Error::Json)
}
