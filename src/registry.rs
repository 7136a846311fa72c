//! The scope registry: names and parents of scope ids, and the call-site caches of `scope!`.
//!
//! Registration is the cold path: it takes a mutex and may allocate (those allocations are booked
//! to the crate's own scope). The hot path never touches the registry; it only reads the current
//! scope id from a thread-local.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::callsite;
use crate::counters;
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::tag::Tag;

/// Number of scope ids, the three reserved ones included. A power of two (tags are masked with
/// `MAX_SCOPES - 1`) and at most 2^15 (call-site caches pack two ids in 31 bits).
pub const MAX_SCOPES: usize = 8192;

/// Id of the unscoped root: blocks allocated outside every guard.
pub(crate) const ROOT_SCOPE_ID: Tag = 0;
/// Id of the crate's own scope: the registry, the per-thread counters, snapshots.
pub(crate) const OWN_SCOPE_ID: Tag = 1;
/// Id of the scope that takes the allocations of scopes refused for lack of room.
pub(crate) const OVERFLOW_SCOPE_ID: Tag = 2;

/// Path of the crate's own scope, where its registry, per-thread counters and snapshots are
/// booked.
pub const OWN_SCOPE: &str = "<memledger>";
/// Path of the scope that takes allocations made in scopes that could not be registered because
/// the table of [`MAX_SCOPES`] ids was full.
pub const OVERFLOW_SCOPE: &str = "<overflow>";
/// Path of the unscoped root: allocations made outside every guard.
pub const UNSCOPED: &str = "";

/// Name and parent of one scope id.
pub(crate) struct ScopeMeta {
    pub name: Box<str>,
    pub parent: Tag,
}

struct Registry {
    /// Indexed by id.
    scopes: Vec<ScopeMeta>,
    /// `children[parent][name] = child`.
    children: HashMap<Tag, HashMap<Box<str>, Tag>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Scope entries refused because the table was full.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Runs `f` with the registry locked and every allocation booked to the crate's own scope.
pub(crate) fn with_registry<R>(f: impl FnOnce(&mut RegistryView<'_>) -> R) -> R {
    let previous = counters::set_current_scope(OWN_SCOPE_ID);
    let gate = crate::fork::gate();
    let mut guard = lock();
    let registry = guard.get_or_insert_with(|| {
        let mut registry = Registry {
            scopes: Vec::with_capacity(64),
            children: HashMap::new(),
        };
        registry.scopes.push(ScopeMeta {
            name: Box::from(UNSCOPED),
            parent: ROOT_SCOPE_ID,
        });
        registry.insert(ROOT_SCOPE_ID, OWN_SCOPE);
        registry.insert(ROOT_SCOPE_ID, OVERFLOW_SCOPE);
        registry
    });
    let result = f(&mut RegistryView { registry });
    drop(guard);
    drop(gate);
    counters::set_current_scope(previous);
    result
}

fn lock() -> MutexGuard<'static, Option<Registry>> {
    // The registry is consistent after every statement that can panic (an allocation failure
    // aborts rather than unwinds), so a poisoned lock is still safe to use.
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    fn insert(&mut self, parent: Tag, name: &str) -> Tag {
        let id = self.scopes.len() as Tag;
        self.scopes.push(ScopeMeta {
            name: Box::from(name),
            parent,
        });
        self.children
            .entry(parent)
            .or_default()
            .insert(Box::from(name), id);
        id
    }
}

/// The registry, locked.
pub(crate) struct RegistryView<'a> {
    registry: &'a mut Registry,
}

impl RegistryView<'_> {
    /// The id of `path` (segments separated by `/`, empty segments ignored) under `parent`,
    /// registering what is missing. Past [`MAX_SCOPES`] ids, the overflow scope.
    pub(crate) fn resolve(&mut self, parent: Tag, path: &str) -> Tag {
        self.resolve_counting(parent, path).0
    }

    /// As [`Self::resolve`], and whether the entry was refused for lack of room (and counted).
    fn resolve_counting(&mut self, parent: Tag, path: &str) -> (Tag, bool) {
        let mut id = parent;
        let mut refused = false;
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            if id == OVERFLOW_SCOPE_ID {
                // The overflow scope has no children: its subtree is whatever found no room.
                refused |= self.is_full();
                break;
            }
            let existing = self
                .registry
                .children
                .get(&id)
                .and_then(|names| names.get(segment))
                .copied();
            id = match existing {
                Some(child) => child,
                None if !self.is_full() => self.registry.insert(id, segment),
                None => {
                    refused = true;
                    OVERFLOW_SCOPE_ID
                }
            };
        }
        // One entry, one refusal, however many of its segments found no room.
        if refused {
            REFUSED.fetch_add(1, Ordering::Relaxed);
        }
        (id, refused)
    }

    /// The id of the absolute `path`, registering what is missing; `None` if the table is full.
    pub(crate) fn resolve_path(&mut self, path: &str) -> Option<Tag> {
        match self.resolve_counting(ROOT_SCOPE_ID, path) {
            (_, true) => None,
            (id, false) => Some(id),
        }
    }

    /// No id is left.
    pub(crate) fn is_full(&self) -> bool {
        self.registry.scopes.len() >= MAX_SCOPES
    }

    pub(crate) fn scopes(&self) -> &[ScopeMeta] {
        &self.registry.scopes
    }
}

/// Scope entries refused because the table was full.
pub(crate) fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// A `scope!` call site: its name and a cache of the last (parent → child) it resolved.
///
/// Not public API; used by the `scope!` macro.
#[doc(hidden)]
pub struct CallSite {
    name: &'static str,
    /// The last (parent → child) resolved: see [`crate::callsite`].
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

    /// The child of `parent` named by this call site.
    #[inline]
    pub(crate) fn resolve(&self, parent: Tag) -> Tag {
        match callsite::lookup(&self.cache, parent) {
            Some((child, refusal)) => {
                if refusal {
                    // Counted without the registry's lock: the table never empties, so the entry
                    // is refused again.
                    REFUSED.fetch_add(1, Ordering::Relaxed);
                }
                child
            }
            None => self.resolve_slow(parent),
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve_slow(&self, parent: Tag) -> Tag {
        let (child, refused) =
            with_registry(|registry| registry.resolve_counting(parent, self.name));
        callsite::store(&self.cache, parent, child, refused);
        child
    }
}
