//! The hot path's thread-local state: which slab the thread holds, its table of cells, its current
//! scope and its front cache, read with one TLS access by every allocation, free and resize.

use core::cell::Cell;
use core::ptr;

use crate::books::cells::Counter;
use crate::books::id::{self, ScopeId, Tag, MAX_SCOPES, ROOT_SCOPE_ID, TAG_SHIFT};
use crate::books::shared::zeroed;
use crate::owner::arena::{Front, COLD_FRONT};
use crate::thread::{ThreadParts, ThreadSlab};

/// The table of a thread without a slab: all-zero cells, whose zero marks send every operation to
/// the cold path. Never written (the cold path never books to it), so it stays in the zero page:
/// 512 KiB of address space, no memory.
struct ColdTable([Counter; MAX_SCOPES]);

// SAFETY:
// - an all-zero `Counter` is an empty cell (`Counter::default`).
static COLD: ColdTable = unsafe { zeroed() };

/// The first cell of [`COLD`].
const COLD_TABLE: *const Counter = COLD.0.as_ptr();

/// The hot-path thread-local state. `const`-initialised and without a destructor, so access is a
/// plain TLS load and it stays valid during thread-local teardown.
struct ThreadState {
    /// Null before the first booking, [`RELEASED`] after the slab was given back.
    slab: Cell<*const ThreadSlab>,
    /// The first cell of this thread's table of cells: its slab's, or [`COLD`]'s.
    cells: Cell<*const Counter>,
    /// `cells`' cell for `scope`.
    cell: Cell<*const Counter>,
    /// The scope arenas' front cache in this thread's slab, or [`COLD_FRONT`].
    front: Cell<*const Front>,
    /// The scope new blocks are booked to.
    scope: Cell<ScopeId>,
    /// `scope` as a trailer holds it.
    tag: Cell<Tag>,
    /// Number of scope guards alive on this thread.
    depth: Cell<u32>,
    /// `generations[d - 1]` counts the guards made at depth `d` (up to [`GUARD_GENERATIONS`]), so
    /// that a guard already ended by an outer one is told apart from a newer guard at its depth.
    generations: [Cell<u32>; GUARD_GENERATIONS],
}

/// Guard depths whose generations are tracked; deeper guards are checked by depth alone.
const GUARD_GENERATIONS: usize = 32;

/// Marks a thread whose slab was given back at thread-local teardown.
// A sentinel, not a dangling pointer to a slab: 1, so that one comparison (`<= RELEASED`)
// tells both null and released apart from a slab.
#[allow(clippy::manual_dangling_ptr)]
const RELEASED: *const ThreadSlab = 1 as *const ThreadSlab;

std::thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            slab: Cell::new(ptr::null()),
            cells: Cell::new(COLD_TABLE),
            cell: Cell::new(COLD_TABLE.wrapping_add(ROOT_SCOPE_ID as usize)),
            front: Cell::new(ptr::addr_of!(COLD_FRONT)),
            scope: Cell::new(ROOT_SCOPE_ID),
            tag: Cell::new(id::tag(ROOT_SCOPE_ID)),
            depth: Cell::new(0),
            generations: [const { Cell::new(0) }; GUARD_GENERATIONS],
        }
    };
}

/// The cell of `scope` in the table of cells starting at `cells`.
#[inline(always)]
fn cell_in(cells: *const Counter, scope: ScopeId) -> &'static Counter {
    // SAFETY:
    // - `cells` is the first cell of a table of `MAX_SCOPES` cells ([`COLD`], or a slab's, never
    //   freed), and the index is below `MAX_SCOPES`.
    unsafe { &*cells.add(usize::from(scope) % MAX_SCOPES) }
}

/// This thread's cell for its current scope, and that scope: the allocation path's lookup.
///
/// The cell is this thread's own: only its [`Counter::try_grow`] and the other hot methods may be
/// called on it, and a `false` from them sends the caller to a cold path.
#[inline(always)]
pub(crate) fn current() -> (&'static Counter, ScopeId) {
    let (cell, scope) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get()))
        .unwrap_or((COLD_TABLE, ROOT_SCOPE_ID));
    // SAFETY:
    // - `cell` is always a cell of this thread's table or of `COLD` (see `ThreadState::enter`);
    //   tables are never freed.
    (unsafe { &*cell }, scope)
}

/// [`current`], and this thread's front cache: the lookup of an allocation of an arena block.
#[inline(always)]
#[cfg_attr(
    not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")),
    allow(dead_code) // Used by the arena path only.
)]
pub(crate) fn current_front() -> (&'static Counter, ScopeId, &'static Front) {
    let (cell, scope, front) = STATE
        .try_with(|s| (s.cell.get(), s.scope.get(), s.front.get()))
        .unwrap_or((COLD_TABLE, ROOT_SCOPE_ID, ptr::addr_of!(COLD_FRONT)));
    // SAFETY:
    // - `cell` as in `current`; `front` is the front cache of this thread's slab (never freed) or
    //   the static `COLD_FRONT`.
    unsafe { (&*cell, scope, &*front) }
}

/// This thread's front cache: the lookup of a resize of an arena block between two classes.
#[inline(always)]
#[cfg_attr(
    not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")),
    allow(dead_code) // Used by the arena path only.
)]
pub(crate) fn front() -> &'static Front {
    let front = STATE
        .try_with(|s| s.front.get())
        .unwrap_or(ptr::addr_of!(COLD_FRONT));
    // SAFETY:
    // - as in `current_front`.
    unsafe { &*front }
}

/// This thread's cell for `scope` and its front cache: the lookup of a free of an arena block.
#[inline(always)]
#[cfg_attr(
    not(all(feature = "arenas", target_os = "linux", target_pointer_width = "64")),
    allow(dead_code) // Used by the arena path only.
)]
pub(crate) fn cell_and_front(scope: ScopeId) -> (&'static Counter, &'static Front) {
    let (cells, front) = STATE
        .try_with(|s| (s.cells.get(), s.front.get()))
        .unwrap_or((COLD_TABLE, ptr::addr_of!(COLD_FRONT)));
    // SAFETY:
    // - as in `current_front`.
    (cell_in(cells, scope), unsafe { &*front })
}

/// This thread's cell for `scope`: the lookup of a free or resize of a block `scope` owns.
#[inline(always)]
pub(crate) fn cell_of(scope: ScopeId) -> &'static Counter {
    cell_in(
        STATE.try_with(|s| s.cells.get()).unwrap_or(COLD_TABLE),
        scope,
    )
}

/// This thread's cell for the owner whose tag is `tag` (see [`Tag`]): the free path's lookup,
/// straight from the raw trailer.
#[inline(always)]
pub(crate) fn cell_of_tag(tag: Tag) -> &'static Counter {
    const { assert!(core::mem::size_of::<Counter>() == 64) };
    let cells = STATE.try_with(|s| s.cells.get()).unwrap_or(COLD_TABLE);
    // `(tag >> TAG_SHIFT) * 64`, as a mask and a shift that the address mode's scale absorbs.
    let offset = usize::from(tag & !((1 << TAG_SHIFT) - 1)) << (6 - TAG_SHIFT);
    // SAFETY:
    // - `offset` is `scope_of(tag) * 64` with `scope_of(tag) < MAX_SCOPES`, so the cell is one of
    //   the `MAX_SCOPES` cells of the table ([`COLD`], or a slab's, never freed).
    unsafe { &*cells.byte_add(offset) }
}

/// The slab this thread holds, if any.
#[inline(always)]
pub(crate) fn held_slab() -> Option<&'static ThreadSlab> {
    let slab = STATE.try_with(|s| s.slab.get()).unwrap_or(RELEASED);
    if slab as usize <= RELEASED as usize {
        return None;
    }
    // SAFETY:
    // - neither null nor `RELEASED`: the slab this thread holds; slabs are never freed.
    Some(unsafe { &*slab })
}

/// This thread's parts of the per-thread subsystems: those of the slab it holds, if it holds one.
/// For the ledger's cold paths, which pass a part to its subsystem.
#[inline(always)]
pub(crate) fn parts() -> Option<&'static ThreadParts> {
    held_slab().map(|slab| slab.parts())
}

/// Whether this thread has never held a slab (and so may take one); `false` once it gave its
/// slab back, or where the thread-local is gone.
#[inline]
pub(crate) fn never_held() -> bool {
    STATE.try_with(|s| s.slab.get().is_null()).unwrap_or(false)
}

/// Points this thread's state at `slab`, which it now holds; `false` if the thread-local is gone
/// (nothing changed).
///
/// # Safety
///
/// - the calling thread claimed `slab` (`SlabList::take_free` or `SlabList::push`) and no other
///   thread holds it: from now on this thread's hot path writes its cells and its parts with
///   plain stores.
pub(crate) unsafe fn hold(slab: &'static ThreadSlab) -> bool {
    STATE
        .try_with(|s| {
            s.slab.set(slab);
            s.cells.set(slab.cells());
            s.front.set(slab.parts().arenas.front());
            s.enter(s.scope.get());
        })
        .is_ok()
}

/// Points this thread's front cache at the cold one, so that no free from here on pushes into
/// the cache: the first step of giving the slab back.
pub(crate) fn leave_front() {
    let _ = STATE.try_with(|state| state.front.set(ptr::addr_of!(COLD_FRONT)));
}

/// Points this thread's state at the cold table and marks it released; the slab it held, if any,
/// which the caller gives back.
pub(crate) fn leave_slab() -> Option<&'static ThreadSlab> {
    STATE
        .try_with(|state| {
            state.cells.set(COLD_TABLE);
            state.cell.set(cell_in(COLD_TABLE, state.scope.get()));
            let slab = state.slab.replace(RELEASED);
            if slab as usize <= RELEASED as usize {
                return None;
            }
            // SAFETY:
            // - neither null nor `RELEASED`: the slab this thread held; slabs are never freed.
            Some(unsafe { &*slab })
        })
        .ok()
        .flatten()
}

/// The scope new blocks of this thread are booked to.
#[inline(always)]
pub(crate) fn current_scope() -> ScopeId {
    STATE.try_with(|s| s.scope.get()).unwrap_or(ROOT_SCOPE_ID)
}

/// The current scope as a trailer holds it.
#[inline(always)]
pub(crate) fn current_tag() -> Tag {
    STATE
        .try_with(|s| s.tag.get())
        .unwrap_or(id::tag(ROOT_SCOPE_ID))
}

/// Makes `scope` current on this thread; returns the previous one.
#[inline]
pub(crate) fn set_current_scope(scope: ScopeId) -> ScopeId {
    STATE.try_with(|s| s.enter(scope)).unwrap_or(ROOT_SCOPE_ID)
}

/// Where a guard sits on its thread: its depth and the generation of that depth when it was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardPlace {
    depth: u32,
    generation: u32,
}

/// Enters `scope` for a guard; returns the scope to restore and the guard's place.
#[inline]
pub(crate) fn enter_guard(scope: ScopeId) -> (ScopeId, GuardPlace) {
    STATE
        .try_with(|s| {
            let depth = s.depth.get().wrapping_add(1);
            s.depth.set(depth);
            let mut generation = 0;
            if (1..=GUARD_GENERATIONS as u32).contains(&depth) {
                let cell = &s.generations[(depth as usize - 1) % GUARD_GENERATIONS];
                generation = cell.get().wrapping_add(1);
                cell.set(generation);
            }
            (s.enter(scope), GuardPlace { depth, generation })
        })
        .unwrap_or((
            ROOT_SCOPE_ID,
            GuardPlace {
                depth: 0,
                generation: 0,
            },
        ))
}

/// Leaves the scope of the guard at `place`, and of every guard entered after it. Does nothing if
/// an outer guard already ended it.
#[inline]
pub(crate) fn leave_guard(previous: ScopeId, place: GuardPlace) {
    let _ = STATE.try_with(|s| {
        let depth = place.depth;
        let same_generation = !(1..=GUARD_GENERATIONS as u32).contains(&depth)
            || s.generations[(depth as usize - 1) % GUARD_GENERATIONS].get() == place.generation;
        if depth != 0 && depth <= s.depth.get() && same_generation {
            s.enter(previous);
            s.depth.set(depth - 1);
        }
    });
}

impl ThreadState {
    /// Makes `scope` current and points `cell` at its cell; returns the previous scope.
    #[inline]
    fn enter(&self, scope: ScopeId) -> ScopeId {
        self.cell.set(cell_in(self.cells.get(), scope));
        self.tag.set(id::tag(scope));
        self.scope.replace(scope)
    }
}
