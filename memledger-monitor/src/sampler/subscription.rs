//! A subscriber's bounded queue: the reader's end ([`Subscription`]) and the sampler's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::handoff::{self, Rejected};
use super::Event;

/// A stream of the sampler's events, from [`Sampler::subscribe`](super::Sampler::subscribe).
///
/// Each subscription has a bounded queue. When a reader falls behind and its queue is full, the
/// sampler drops the *oldest* queued event to make room for the newest and counts it in
/// [`dropped`](Subscription::dropped): a slow or absent reader never blocks the sampler, never
/// grows memory, and reads the latest state when it catches up. Dropping the subscription
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub(super) receiver: Receiver<Event>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// Waits for the next event; `None` once the sampler has stopped and the queue is empty.
    pub fn recv(&self) -> Option<Event> {
        self.receiver.recv().ok()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.receiver.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }

    /// The underlying channel, for `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<Event> {
        &self.receiver
    }

    /// Events dropped from this subscription's full queue so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The sampler's end of a subscription.
pub(super) struct Subscriber {
    pub(super) sender: Sender<Event>,
    /// A second receiver, to drop the oldest event when the queue is full.
    pub(super) oldest: Receiver<Event>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl Subscriber {
    /// Sends without blocking; `false` once the reader is gone.
    pub(super) fn send(&self, event: Event, dropped_total: &mut u64) -> bool {
        // The sampler holds a receiver itself, so the channel never disconnects: the reader is
        // gone when only the sampler's own count of the `dropped` counter is left.
        if Arc::strong_count(&self.dropped) == 1 {
            return false;
        }
        match handoff::send_dropping_oldest(self, event) {
            Some(dropped) => {
                self.dropped.fetch_add(dropped, Ordering::Relaxed);
                *dropped_total += dropped;
                true
            }
            None => false,
        }
    }
}

impl handoff::Queue for Subscriber {
    type Item = Event;

    fn try_push(&self, event: Event) -> Result<(), Rejected<Event>> {
        self.sender.try_send(event).map_err(|e| match e {
            TrySendError::Full(back) => Rejected::Full(back),
            TrySendError::Disconnected(_) => Rejected::Closed,
        })
    }

    fn drop_oldest(&self) -> bool {
        self.oldest.try_recv().is_ok()
    }
}
