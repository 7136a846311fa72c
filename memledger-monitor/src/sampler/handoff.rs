//! Handing events to a bounded queue without ever blocking: when the queue is full, the oldest
//! queued event gives way to the newest and is counted.
//!
//! The sampler sends each event to every subscriber this way (a subscriber's queue is a bounded
//! crossbeam channel, and the sampler holds a second receiver of it to take the oldest event
//! out). The protocol lives here, over a [`Queue`] trait, so that `loom/tests/models.rs` can check it
//! against a reader that takes events at the same time, in every interleaving.

/// The sender's view of a bounded queue that a reader drains concurrently.
pub(crate) trait Queue {
    type Item;

    /// Appends `item` if there is room; gives it back if the queue is full or closed.
    fn try_push(&self, item: Self::Item) -> Result<(), Rejected<Self::Item>>;

    /// Removes the oldest queued item; `false` if the queue was empty (the reader took it first).
    fn drop_oldest(&self) -> bool;
}

/// Why [`Queue::try_push`] gave an item back.
pub(crate) enum Rejected<T> {
    Full(T),
    Closed,
}

/// Sends `item`, dropping the oldest queued items while the queue is full. Returns how many were
/// dropped, or `None` if the queue was closed (the item is then dropped too, uncounted: nobody
/// will read it).
///
/// Never blocks and always ends: each round either queues the item or removes one, and the
/// reader only ever removes items, so the queue cannot stay full for more rounds than it holds.
pub(crate) fn send_dropping_oldest<Q: Queue>(queue: &Q, item: Q::Item) -> Option<u64> {
    let mut item = item;
    let mut dropped = 0;
    loop {
        match queue.try_push(item) {
            Ok(()) => return Some(dropped),
            Err(Rejected::Full(back)) => {
                item = back;
                // Seeded bug (`.ci/mutants`): a drop counted even when the reader took the
                // oldest event first.
                #[cfg(memledger_mutant = "handoff_counts_a_taken_event")]
                {
                    queue.drop_oldest();
                    dropped += 1;
                }
                #[cfg(not(memledger_mutant = "handoff_counts_a_taken_event"))]
                if queue.drop_oldest() {
                    dropped += 1;
                }
            }
            Err(Rejected::Closed) => return None,
        }
    }
}
