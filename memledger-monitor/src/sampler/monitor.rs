//! One process-wide sampler, started and queried through functions.
//!
//! ```
//! use std::time::Duration;
//! memledger_monitor::monitor::start(
//!     memledger_monitor::Sampler::builder()
//!         .interval(Duration::from_millis(10))
//!         .budget(memledger_monitor::Budget::builder().total(64 << 30).build().unwrap()),
//! )
//! .unwrap();
//! assert!(memledger_monitor::monitor::is_running());
//! while memledger_monitor::monitor::status().is_none() {
//!     std::thread::sleep(Duration::from_millis(5));
//! }
//! println!("{}", memledger_monitor::monitor::status().unwrap().summary);
//! assert!(memledger_monitor::monitor::stop());
//! ```

use super::{Sampler, SamplerBuilder, Subscription};
use crate::error::Error;
use crate::status::Status;
use std::sync::{Arc, Mutex};

static MONITOR: Mutex<Option<Sampler>> = Mutex::new(None);

fn lock() -> std::sync::MutexGuard<'static, Option<Sampler>> {
    MONITOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the process-wide sampler with `builder`'s settings; an error if one is running.
pub fn start(builder: SamplerBuilder) -> Result<(), Error> {
    let mut monitor = lock();
    if monitor.is_some() {
        return Err(Error::MonitorRunning);
    }
    *monitor = Some(builder.start()?);
    Ok(())
}

/// Stops the process-wide sampler; `false` if none was running.
pub fn stop() -> bool {
    let sampler = lock().take();
    sampler.map(Sampler::stop).is_some()
}

/// Whether the process-wide sampler runs.
pub fn is_running() -> bool {
    lock().is_some()
}

/// The status of its last tick.
pub fn status() -> Option<Status> {
    lock().as_ref().and_then(Sampler::status)
}

/// Its last tick.
pub fn latest() -> Option<Arc<super::Sample>> {
    lock().as_ref().and_then(Sampler::latest)
}

/// A stream of its events.
pub fn subscribe() -> Option<Subscription> {
    lock().as_ref().map(Sampler::subscribe)
}

/// Runs `f` with the process-wide sampler, for what the other functions do not cover.
pub fn with<R>(f: impl FnOnce(&Sampler) -> R) -> Option<R> {
    lock().as_ref().map(f)
}
