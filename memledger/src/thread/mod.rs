//! A thread's state, in one place: the composition point of every per-thread part.
//!
//! Each thread books into a counter slab of its own ([`crate::books::slab::Slab`]): one
//! [`Counter`](crate::books::cells::Counter) per scope id, written by that thread alone with
//! plain loads and stores, and summed by readers. Beside the cells, the slab carries the thread's
//! [`ThreadParts`]: what each other per-thread subsystem keeps (the scope arenas' explicit caches
//! and front cache, the sampling's points). This module makes the slab with every part, points
//! the thread-local [`state`] at it, runs each part's work after a refill, and releases it all
//! when the thread exits. The subsystems never fetch their part back from the thread-local: the
//! functions here, and the ledger above them, pass it down.
//!
//! - [`state`]: the hot path's thread-local (`STATE`), its lookups and the scope guards' depths;
//! - [`slab`]: the process-wide list of slabs, taking and making one, giving it back at exit,
//!   and the readers' walk over every slab;
//! - [`cold`]: the cold paths that book through the thread's slab (refills, reservations,
//!   sample decisions, mode changes).
//!
//! Layers run one way: `crate::books` (cells, slab, shared slots) and the subsystems' per-thread
//! types (`crate::owner::arena::ThreadArenas`, `crate::sampling::point::ThreadSampling`) below;
//! the registry, scopes, snapshots, the sampling's records and the ledger above. Nothing here
//! is called back from below but through a function passed down
//! ([`crate::sys::thread_exit::arrange_release`] receives [`slab::release_thread_slab`]).
//!
//! # Adding a per-thread part
//!
//! 1. Define the part in its subsystem: a type that is valid as all-zero bytes (slabs are made
//!    zeroed) and `Sync` (readers walk every slab), written by the slab's holder only.
//! 2. Add a field for it to [`ThreadParts`], and set it up in [`ThreadParts::init`] if zero is not
//!    its starting state.
//! 3. Pass `&parts.<field>` to the subsystem where this module runs its work: after a refill
//!    ([`cold::book_cold`]), at release ([`slab::release_thread_slab`]), or from the ledger
//!    through [`state::parts`].
//!
//! # Slabs
//!
//! Slabs are never freed. A thread takes a free slab (or makes one) on its first booking, and
//! gives it back when it exits; the next thread reuses it and keeps adding to the same monotonic
//! counters. The memory held by the ledger is therefore bounded by the largest number of threads
//! alive at once, not by the number ever started. On Unix a slab is a private anonymous mapping
//! of `MAX_SCOPES × 64` bytes plus its header and parts, of which only the pages a thread writes
//! become resident: about 4 KiB for each group of 64 consecutive scope ids it books to (one or
//! two pages of the system's, as the group falls).
//!
//! Until a thread has a slab, its table is the static all-zero cold table, whose cells' marks send
//! every operation to the cold path, which makes the slab. So the hot path has no null check.
//!
//! # Thread teardown
//!
//! The hot-path state is a `const` thread-local without a destructor, so it stays readable for
//! the whole life of the thread, during thread-local destruction included.
//! [`crate::sys::thread_exit`] gives the slab back when the thread exits; after that, the
//! thread's table is the cold table again and it books through the shared atomics of
//! [`ScopeSlot`](crate::books::cells::ScopeSlot) instead (rare, and exact).

pub(crate) mod cold;
pub(crate) mod slab;
pub(crate) mod state;

use crate::books::slab::Slab;
use crate::owner::arena::ThreadArenas;
use crate::sampling::point::ThreadSampling;

/// What a thread keeps per slab beside its counter cells: one part per per-thread subsystem,
/// handed on with the slab. All-zero bytes are an empty value of every part.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ThreadParts {
    /// The scope arenas' explicit caches and front cache (nothing without the arenas).
    pub(crate) arenas: ThreadArenas,
    /// The sample points of this thread's cells.
    pub(crate) sampling: ThreadSampling,
}

impl ThreadParts {
    /// Sets up the parts of a new, zeroed slab, before any thread holds it.
    fn init(&self) {
        self.arenas.init();
    }
}

// Readers on other threads walk every slab's parts (`slab::for_each_parts`): each part must be
// `Sync`, which the generic slab cannot require of every `X` (the model checks use `()`).
const _: () = {
    const fn readers_may_share<T: Sync>() {}
    readers_may_share::<ThreadParts>();
};

/// A thread's counter slab, with every part.
pub(crate) type ThreadSlab = Slab<ThreadParts>;
