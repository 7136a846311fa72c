//! Transfer caches: batches of freed arena blocks handed from the threads that free them to the
//! threads that allocate them, one atomic operation per batch.
//!
//! A block built on one thread and dropped on another lands in the freeing thread's front cache
//! (`thread.rs`), where its scope's allocating thread never looks. Without a way back, every
//! allocation of the producer misses its front cache and every free of the consumer fills its own,
//! which is then emptied into jemalloc: both sides pay jemalloc's slower flagged calls. A
//! transfer cache per (arena, size class) closes the loop, as tcmalloc's transfer caches do: a
//! thread whose front cache is full hands its stacks over in batches of [`batch`] blocks, and a
//! thread whose stack of that arena and class is empty takes a whole batch. Blocks in a batch stay
//! linked through their first 8 bytes, as in the front cache, so a batch moves as one pointer.
//!
//! Each cache is [`SLOTS`] slots of one batch each. A hand-over is a compare-and-swap of an empty
//! slot to the batch (release), a take a swap of a full slot to empty (acquire): whoever swaps a
//! batch out owns all of it, and the links the giver wrote are visible to it. No pointer is read
//! before the atomic operation that claims it, so there is no ABA to guard against, and no lock.
//! The caches live in the crate's static memory, are never freed, and survive `fork` as any
//! other static does.
//!
//! The bytes held over all caches are bounded by a process-wide count (two atomic operations per
//! batch): a hand-over that would pass it is refused and the blocks go to jemalloc instead.
//!
//! Compiled unchanged by the model checks in `loom/`, which is why it imports only
//! `crate::sys::atomic`.

use core::ptr;

use crate::sys::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Batches one transfer cache holds.
pub(crate) const SLOTS: usize = 8;

/// Bytes of a batch, for classes small enough that [`batch`] blocks fit in it.
pub(crate) const BATCH_BYTES: usize = 16 * 1024;

/// Most blocks of a batch.
const BATCH_MAX: usize = 64;

/// Blocks of a batch of a class of `class_size` bytes: as many as fit in [`BATCH_BYTES`], between 1
/// and 64.
#[inline(always)]
pub(crate) const fn batch(class_size: usize) -> usize {
    let blocks = BATCH_BYTES / class_size;
    if blocks == 0 {
        1
    } else if blocks > BATCH_MAX {
        BATCH_MAX
    } else {
        blocks
    }
}

/// One (arena, class)'s transfer cache: up to [`SLOTS`] batches of that class's [`batch`] blocks,
/// each linked through the blocks' first 8 bytes and ended by a null link. One cache line, so that
/// neighbouring classes' caches share none.
#[repr(align(64))]
pub(crate) struct Transfer {
    slots: [AtomicPtr<u8>; SLOTS],
}

impl Transfer {
    /// An empty cache.
    #[cfg(not(memledger_loom))]
    pub(crate) const fn new() -> Transfer {
        Transfer {
            slots: [const { AtomicPtr::new(ptr::null_mut()) }; SLOTS],
        }
    }

    /// An empty cache (loom's atomics have no `const` constructor).
    #[cfg(memledger_loom)]
    pub(crate) fn new() -> Transfer {
        Transfer {
            slots: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// Hands the batch `first` over: `true` if a slot took it (the caller no longer owns its
    /// blocks), `false` if every slot is full (nothing changed).
    ///
    /// The caller has written the batch's links before the call: the release of the exchange
    /// publishes them to the thread that takes the batch.
    #[inline]
    pub(crate) fn give(&self, first: *mut u8) -> bool {
        for slot in &self.slots {
            // Seeded bug (`.ci/mutants`): a hand-over that stores without checking that the slot
            // is empty, so that a batch given at the same time is lost.
            #[cfg(memledger_mutant = "transfer_give_by_store")]
            if slot.load(Ordering::Relaxed).is_null() {
                slot.store(first, Ordering::Release);
                return true;
            }
            #[cfg(not(memledger_mutant = "transfer_give_by_store"))]
            if slot.load(Ordering::Relaxed).is_null()
                && slot
                    .compare_exchange(ptr::null_mut(), first, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Takes a batch: its first block, which the caller now owns with every block linked from it;
    /// null if every slot is empty.
    #[inline]
    pub(crate) fn take(&self) -> *mut u8 {
        for slot in &self.slots {
            if slot.load(Ordering::Relaxed).is_null() {
                continue;
            }
            // Acquire: the links the giver wrote before its release are visible here.
            #[cfg(not(memledger_mutant = "transfer_take_relaxed"))]
            let first = slot.swap(ptr::null_mut(), Ordering::Acquire);
            // Seeded bug (`.ci/mutants`): a take that does not acquire the giver's links.
            #[cfg(memledger_mutant = "transfer_take_relaxed")]
            let first = slot.swap(ptr::null_mut(), Ordering::Relaxed);
            if !first.is_null() {
                return first;
            }
        }
        ptr::null_mut()
    }
}

/// The bytes all transfer caches may hold together.
pub(crate) struct Bound {
    held: AtomicUsize,
    limit: usize,
}

impl Bound {
    /// A bound of `limit` bytes, none held.
    #[cfg(not(memledger_loom))]
    pub(crate) const fn new(limit: usize) -> Bound {
        Bound {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// A bound of `limit` bytes, none held (loom's atomics have no `const` constructor).
    #[cfg(memledger_loom)]
    pub(crate) fn new(limit: usize) -> Bound {
        Bound {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// Counts `bytes` more as held, if that stays within the limit.
    #[inline]
    pub(crate) fn claim(&self, bytes: usize) -> bool {
        let before = self.held.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes <= self.limit {
            return true;
        }
        self.held.fetch_sub(bytes, Ordering::Relaxed);
        false
    }

    /// Counts `bytes` fewer as held (a batch taken, or a refused hand-over's claim given back).
    #[inline]
    pub(crate) fn release(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(all(test, not(memledger_loom)))]
mod tests {
    use super::*;

    /// A batch of `n` blocks linked through `cells`.
    fn link(cells: &mut [[usize; 2]]) -> *mut u8 {
        let n = cells.len();
        for i in 0..n {
            let next = if i + 1 < n {
                ptr::addr_of_mut!(cells[i + 1]).cast::<u8>() as usize
            } else {
                0
            };
            cells[i][0] = next;
        }
        ptr::addr_of_mut!(cells[0]).cast::<u8>()
    }

    #[test]
    fn batches_fill_the_slots_and_come_back_whole() {
        let cache = Transfer::new();
        let mut storage = [[[0usize; 2]; 3]; SLOTS + 1];
        let firsts: Vec<*mut u8> = storage.iter_mut().map(|b| link(b)).collect();
        for &first in &firsts[..SLOTS] {
            assert!(cache.give(first));
        }
        // Every slot is full: the next batch is refused and stays the caller's.
        assert!(!cache.give(firsts[SLOTS]));
        let mut taken = Vec::new();
        loop {
            let first = cache.take();
            if first.is_null() {
                break;
            }
            taken.push(first);
        }
        taken.sort();
        let mut given = firsts[..SLOTS].to_vec();
        given.sort();
        assert_eq!(taken, given);
        // Empty again: a take finds nothing, a hand-over is taken.
        assert!(cache.take().is_null());
        assert!(cache.give(firsts[SLOTS]));
        assert_eq!(cache.take(), firsts[SLOTS]);
    }

    #[test]
    fn the_bound_refuses_what_would_pass_it() {
        let bound = Bound::new(100);
        assert!(bound.claim(60));
        assert!(!bound.claim(41));
        assert_eq!(bound.held(), 60);
        assert!(bound.claim(40));
        bound.release(100);
        assert_eq!(bound.held(), 0);
    }

    #[test]
    fn batches_hold_what_fits_in_their_bytes() {
        assert_eq!(batch(8), 64);
        assert_eq!(batch(128), 64);
        assert_eq!(batch(256), 64);
        assert_eq!(batch(512), 32);
        assert_eq!(batch(4096), 4);
        assert_eq!(batch(16384), 1);
    }
}
