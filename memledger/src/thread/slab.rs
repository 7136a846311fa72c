//! Every thread's slab: the process-wide list, taking or making one for a thread, giving it back
//! when the thread exits, and the readers' walk over all of them.

use core::alloc::GlobalAlloc;

use crate::books::cells::Totals;
use crate::books::id::MAX_SCOPES;
use crate::books::shared::{self, alloc_zeroed_internal, zeroed, SharedSlots};
use crate::books::slab::SlabList;
use crate::owner::arena::ThreadArenas;
use crate::sys::atomic::{AtomicU64, Ordering};
use crate::thread::{state, ThreadParts, ThreadSlab};

/// Every slab ever made.
// SAFETY:
// - an all-zero `SlabList` is an empty one: a null head.
static SLABS: SlabList<ThreadParts> = unsafe { zeroed() };

/// Gives this thread a slab: a free one from the list, else a new one.
#[cold]
pub(crate) fn acquire<A: GlobalAlloc>(inner: &A) -> Option<&'static ThreadSlab> {
    let slab = SLABS.take_free().or_else(|| new_slab(inner))?;
    // SAFETY:
    // - `take_free` claimed the slab, or `push` gave a new one to this thread: nobody else holds
    //   it.
    if !unsafe { state::hold(slab) } {
        release(slab);
        return None;
    }
    // Arranging the release may allocate; the slab is in place, so such allocations are booked
    // through it like any other. If it cannot be arranged, give the slab back at once and book
    // through the shared slots from now on, so that no slab is lost with the thread.
    if !crate::sys::thread_exit::arrange_release(release_thread_slab) {
        release_thread_slab();
        return None;
    }
    Some(slab)
}

/// Gives this thread's slab back, with every part; from now on the thread books through the
/// shared slots.
pub(crate) fn release_thread_slab() {
    // The front cache first, so that no free from here on pushes into the cache being flushed.
    state::leave_front();
    if let Some(parts) = state::parts() {
        crate::owner::arena::release_thread(&parts.arenas);
    }
    if let Some(slab) = state::leave_slab() {
        release(slab);
    }
}

fn new_slab<A: GlobalAlloc>(inner: &A) -> Option<&'static ThreadSlab> {
    let raw = map_zeroed_slab().or_else(|| alloc_zeroed_internal::<ThreadSlab, A>(inner))?;
    // SAFETY:
    // - `raw` is a fresh, zeroed, properly aligned allocation of a slab: all-zero is a valid,
    //   empty slab with empty parts, nothing else can see it yet, and slabs are never freed.
    let slab = unsafe { &*raw };
    slab.parts().init();
    // SAFETY:
    // - as above; the parts' initialisation went through their atomics.
    Some(unsafe { SLABS.push(raw) })
}

/// Bytes of address space mapped for slabs (none where they come from the inner allocator).
static MAPPED_BYTES: AtomicU64 = AtomicU64::new(0);

/// Address space mapped for the slabs of all threads; only the pages threads wrote are resident.
pub(crate) fn mapped_bytes() -> u64 {
    MAPPED_BYTES.load(Ordering::Relaxed)
}

/// A zeroed slab in a private anonymous mapping of its own, so that the pages of the table a
/// thread never books to cost no memory; `None` where mappings are not used (then the slab comes
/// from the inner allocator).
#[cfg(all(unix, not(miri)))]
fn map_zeroed_slab() -> Option<*mut ThreadSlab> {
    let length = core::mem::size_of::<ThreadSlab>();
    // SAFETY:
    // - an anonymous private mapping at an address of the kernel's choosing touches no existing
    //   memory; its pages read as zeros and are page-aligned (more than a slab needs).
    let base = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            length,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    MAPPED_BYTES.fetch_add(length as u64, Ordering::Relaxed);
    Some(base.cast::<ThreadSlab>())
}

#[cfg(not(all(unix, not(miri))))]
fn map_zeroed_slab() -> Option<*mut ThreadSlab> {
    None
}

/// Publishes the slab's pending bytes and marks it free.
fn release(slab: &ThreadSlab) {
    slab.release(SharedSlots);
}

/// Calls `f` with the parts of every slab ever made, held or free: the readers' view of each
/// per-thread subsystem (the arenas' live blocks and front caches).
pub(crate) fn for_each_parts(mut f: impl FnMut(&ThreadParts)) {
    SLABS.for_each(|slab| f(slab.parts()));
}

/// Calls `f` with the scope arenas' part of every slab ever made: how the arenas' readers walk
/// the threads' tables (`crate::owner::arena::usage::EachTable`).
pub(crate) fn for_each_arenas(f: &mut dyn FnMut(&ThreadArenas)) {
    for_each_parts(|parts| f(&parts.arenas));
}

/// Slab usage, for snapshots.
#[derive(Clone, Copy, Default, Debug)]
pub(crate) struct SlabUsage {
    pub in_use: usize,
    pub total: usize,
}

/// Sums every thread's counters for scopes `0..scopes`.
pub(crate) fn read_totals(scopes: usize, out: &mut [Totals]) -> SlabUsage {
    let scopes = scopes.min(MAX_SCOPES).min(out.len());
    let mut usage = SlabUsage::default();
    // The shared counters (bookings made without a slab) and the peaks first; then every slab's
    // cells.
    for (id, total) in out.iter_mut().enumerate().take(scopes) {
        *total = shared::slot(id as crate::books::id::ScopeId).totals();
    }
    SLABS.for_each(|slab| {
        usage.total += 1;
        if slab.in_use() {
            usage.in_use += 1;
        }
        slab.for_each_cell(scopes, |id, cell| cell.add_to(&mut out[id]));
    });
    usage
}
