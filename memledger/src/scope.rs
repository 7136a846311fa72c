//! Entering and leaving scopes: the RAII guard, the closure form and the `scope!` macro.

use core::marker::PhantomData;

use crate::books::callsite;
use crate::books::id::{self, ScopeId};
use crate::registry;
use crate::sys::atomic::AtomicU32;
use crate::thread::cold;
use crate::thread::state::{self, current_scope as current_scope_id, GuardPlace};

/// Books the current thread's allocations to a scope until dropped, then restores the scope that
/// was current before.
///
/// Made by [`scope!`](crate::scope!) or [`enter`]. A guard belongs to the thread that made it: it
/// is neither `Send` nor `Sync`, because the scope it sets is a property of that thread.
///
/// ```compile_fail
/// fn assert_send<T: Send>(_: T) {}
/// assert_send(memledger::scope!("not_send"));
/// ```
///
/// ```compile_fail
/// fn assert_sync<T: Sync>(_: &T) {}
/// let guard = memledger::scope!("not_sync");
/// assert_sync(&guard);
/// ```
///
/// Guards nest: a scope entered while another is current becomes its child, named by its path
/// (`"project_indexes/parse"`). Dropping a guard restores the scope that was current when it was
/// made. Dropping an outer guard before an inner one (struct fields drop in declaration order,
/// for instance) ends the inner scope too; the inner guard's later drop then does nothing, so a
/// thread is never left in a scope whose guards are all gone.
#[must_use = "the scope ends when the guard is dropped: bind it with `let _guard = ...`"]
#[derive(Debug)]
pub struct ScopeGuard {
    previous: ScopeId,
    /// Where the guard sits among this thread's guards.
    place: GuardPlace,
    /// `*const ()` makes the guard `!Send` and `!Sync`.
    _not_send: PhantomData<*const ()>,
}

impl ScopeGuard {
    #[inline]
    fn set(scope: ScopeId) -> ScopeGuard {
        let (previous, place) = state::enter_guard(scope);
        ScopeGuard {
            previous,
            place,
            _not_send: PhantomData,
        }
    }

    /// Enters the crate's own scope, for the crate's bookkeeping.
    pub(crate) fn own() -> ScopeGuard {
        ScopeGuard::set(id::OWN_SCOPE_ID)
    }
}

impl Drop for ScopeGuard {
    #[inline]
    fn drop(&mut self) {
        state::leave_guard(self.previous, self.place);
    }
}

/// Enters the scope `name`, a child of the current scope, until the returned guard is dropped.
///
/// `name` may hold several segments separated by `/` (`"project_indexes/parse"` enters
/// `project_indexes`, then `parse` within it); empty segments are ignored, so an empty name leaves
/// the current scope unchanged. [`scope!`](crate::scope!) does the same with a name known at
/// compile time and caches the lookup at its call site; `enter` looks the name up in the registry
/// (a mutex and a hash lookup) each time.
///
/// ```
/// let _guard = memledger::enter("global_index");
/// let index: Vec<u64> = (0..1000).collect();
/// # drop(index);
/// ```
pub fn enter(name: &str) -> ScopeGuard {
    let parent = current_scope_id();
    let child = registry::with_registry(|registry| registry.resolve(parent, name));
    ScopeGuard::set(child)
}

/// Runs `f` with the scope `name` (a child of the current scope) entered, and returns its result.
///
/// ```
/// let index = memledger::in_scope("global_index", || vec![0u64; 1024]);
/// assert_eq!(index.len(), 1024);
/// ```
pub fn in_scope<R>(name: &str, f: impl FnOnce() -> R) -> R {
    let _guard = enter(name);
    f()
}

/// The path of the scope that is current on this thread (`""` outside every guard).
///
/// ```
/// let _outer = memledger::scope!("project_indexes");
/// let _inner = memledger::scope!("parse");
/// assert_eq!(memledger::current_scope(), "project_indexes/parse");
/// ```
pub fn current_scope() -> String {
    ScopeHandle::current().path()
}

/// A scope, as a value that any thread can enter: work handed to another thread or a pool stays
/// booked to the component that handed it over.
///
/// A handle is `Copy`, `Send` and `Sync`, and costs nothing to keep: scopes are never
/// unregistered, so a handle stays valid for the life of the process. Entering it sets the scope
/// itself, not a child of whatever is current on the entering thread.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// # fn main() {
/// let _g = memledger::scope!("project_indexes");
/// let here = memledger::ScopeHandle::current();
/// let built = std::thread::spawn(move || here.in_scope(|| vec![0u8; 4096]))
///     .join()
///     .unwrap();
/// let snap = memledger::snapshot();
/// assert!(snap.scope("project_indexes").unwrap().live_bytes >= 4096);
/// # drop(built);
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScopeHandle {
    id: ScopeId,
}

impl ScopeHandle {
    /// The scope current on this thread.
    pub fn current() -> ScopeHandle {
        ScopeHandle {
            id: current_scope_id(),
        }
    }

    /// The unscoped root.
    pub const fn root() -> ScopeHandle {
        ScopeHandle {
            id: id::ROOT_SCOPE_ID,
        }
    }

    /// The scope at the absolute `path` (`"project_indexes/parse"`), registered if it is new.
    /// Past [`MAX_SCOPES`](crate::MAX_SCOPES) scopes, the overflow scope, as for [`enter`].
    pub fn at(path: &str) -> ScopeHandle {
        ScopeHandle::root().child(path)
    }

    /// The child `name` of this scope (`name` may hold several `/`-separated segments),
    /// registered if it is new.
    pub fn child(self, name: &str) -> ScopeHandle {
        ScopeHandle {
            id: registry::with_registry(|registry| registry.resolve(self.id, name)),
        }
    }

    /// Makes this scope current on the calling thread until the guard is dropped.
    #[inline]
    pub fn enter(self) -> ScopeGuard {
        ScopeGuard::set(self.id)
    }

    /// Runs `f` with this scope current on the calling thread.
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _guard = self.enter();
        f()
    }

    /// Puts this scope in exact mode (`true`) or takes it out (`false`).
    ///
    /// In exact mode every allocation, free and resize booked to the scope is published to its
    /// shared total as it happens, instead of once per 64 KiB of a thread's traffic, so the scope's
    /// [`peak_bytes`](crate::ScopeStats::peak_bytes) is exact however many threads book to it.
    /// Each operation then takes the books' cold path: a few hundred more instructions and two
    /// atomic read-modify-writes on a line the scope's threads share (`BENCHMARKS.md` has the
    /// figures, from the `arena_paths` bench's `pair64_exact` loop). Scopes registered under an
    /// exact scope start exact. [`measure`](crate::measure) puts the scopes it measures in exact
    /// mode while it runs.
    ///
    /// A thread that booked to the scope before holds up to
    /// [`Snapshot::PEAK_RESOLUTION_PER_THREAD`](crate::Snapshot::PEAK_RESOLUTION_PER_THREAD)
    /// bytes unpublished until its next operation on the scope.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
    /// # fn main() {
    /// let parse = memledger::ScopeHandle::at("parse");
    /// parse.set_exact(true);
    /// let peak = parse.in_scope(|| {
    ///     let a = std::hint::black_box(vec![0u8; 1000]);
    ///     drop(a);
    ///     let b = std::hint::black_box(vec![0u8; 600]);
    ///     drop(b);
    ///     memledger::snapshot().scope("parse").unwrap().peak_bytes
    /// });
    /// assert_eq!(peak, 1000);
    /// assert!(parse.is_exact());
    /// # }
    /// ```
    pub fn set_exact(self, exact: bool) {
        cold::set_exact(self.id, exact);
    }

    /// Whether this scope is in exact mode (see [`Self::set_exact`]).
    pub fn is_exact(self) -> bool {
        crate::books::shared::exact(self.id)
    }

    pub(crate) fn id(self) -> ScopeId {
        self.id
    }

    /// The scope's path (`""` for the unscoped root).
    pub fn path(self) -> String {
        registry::with_registry(|registry| registry.path(self.id))
    }
}

/// A `scope!` call site: its name and a cache of the last (parent → child) it resolved, in the
/// packed form of [`crate::books::callsite`].
///
/// Not public API; used by the `scope!` macro.
#[doc(hidden)]
pub struct CallSite {
    name: &'static str,
    /// The last (parent → child) resolved: see [`crate::books::callsite`].
    cache: AtomicU32,
}

impl CallSite {
    /// A call site for `name`.
    pub const fn new(name: &'static str) -> Self {
        CallSite {
            name,
            cache: AtomicU32::new(0),
        }
    }

    /// Enters this call site's scope under the current scope.
    #[inline]
    pub fn enter(&'static self) -> ScopeGuard {
        let parent = current_scope_id();
        ScopeGuard::set(self.resolve(parent))
    }

    /// The child of `parent` named by this call site.
    #[inline]
    fn resolve(&self, parent: ScopeId) -> ScopeId {
        match callsite::lookup(&self.cache, parent) {
            Some((child, refusal)) => {
                if refusal {
                    registry::count_refusal();
                }
                child
            }
            None => self.resolve_slow(parent),
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve_slow(&self, parent: ScopeId) -> ScopeId {
        let (child, refused) =
            registry::with_registry(|registry| registry.resolve_counting(parent, self.name));
        callsite::store(&self.cache, parent, child, refused);
        child
    }
}

/// Enters a scope until the end of the enclosing block: every heap block allocated meanwhile on
/// this thread is booked to it, until freed, whichever thread frees it.
///
/// The name is a `&'static str` known at compile time; the call site caches its scope id, so
/// entering costs two thread-local accesses and an atomic load once the scope is registered.
/// Inside another scope, the new scope is its child (`"project_indexes/parse"`). See [`enter`] for
/// names only known at run time.
///
/// ```
/// fn build_project_index() -> Vec<String> {
///     let _g = memledger::scope!("project_indexes");
///     (0..100).map(|i| format!("symbol_{i}")).collect()
/// }
/// let index = build_project_index();
/// # drop(index);
/// ```
#[macro_export]
macro_rules! scope {
    ($name:expr) => {{
        static CALLSITE: $crate::__private::CallSite = $crate::__private::CallSite::new($name);
        CALLSITE.enter()
    }};
}
