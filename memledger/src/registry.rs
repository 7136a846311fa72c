//! The scope registry: names and parents of scope ids, and their paths.
//!
//! Registration is the cold path: it takes a mutex and may allocate (those allocations are booked
//! to the crate's own scope, which the registry enters on the calling thread). The hot path never
//! touches the registry; it only reads the current scope id from a thread-local. A new id needs
//! only its shared slot (no cell has booked to it yet), so the registry sits above the thread
//! state and below everything that names scopes: scopes, snapshots, sampled sites.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::books::id::{
    ScopeId, MAX_SCOPES, OVERFLOW_SCOPE, OVERFLOW_SCOPE_ID, OWN_SCOPE, OWN_SCOPE_ID, ROOT_SCOPE_ID,
    SAMPLED_SCOPE, SAMPLED_SCOPE_ID, UNSCOPED,
};
use crate::books::shared;
use crate::sys::atomic::{AtomicU64, Ordering};
use crate::thread::state::set_current_scope;

/// Name and parent of one scope id.
pub(crate) struct ScopeMeta {
    pub name: Box<str>,
    pub parent: ScopeId,
}

struct Registry {
    /// Indexed by id.
    scopes: Vec<ScopeMeta>,
    /// `children[parent][name] = child`.
    children: HashMap<ScopeId, HashMap<Box<str>, ScopeId>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Scope entries refused because the table was full.
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Runs `f` with the registry locked and every allocation booked to the crate's own scope.
pub(crate) fn with_registry<R>(f: impl FnOnce(&mut RegistryView<'_>) -> R) -> R {
    let previous = set_current_scope(OWN_SCOPE_ID);
    let gate = crate::sys::fork::gate();
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
        let sampled = registry.insert(OWN_SCOPE_ID, SAMPLED_SCOPE);
        debug_assert_eq!(sampled, SAMPLED_SCOPE_ID);
        // Nothing is ever booked to it; should anything try, exact mode keeps its cells without
        // a budget, so that a sampled block's free always reaches the cold path.
        shared::set_new_scope_exact(SAMPLED_SCOPE_ID);
        registry
    });
    let result = f(&mut RegistryView { registry });
    drop(guard);
    drop(gate);
    set_current_scope(previous);
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
    fn insert(&mut self, parent: ScopeId, name: &str) -> ScopeId {
        let id = self.scopes.len() as ScopeId;
        self.scopes.push(ScopeMeta {
            name: Box::from(name),
            parent,
        });
        self.children
            .entry(parent)
            .or_default()
            .insert(Box::from(name), id);
        // A scope registered under an exact one is exact too, so that a measurement's nested
        // scopes are.
        if shared::exact(parent) {
            shared::set_new_scope_exact(id);
        }
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
    pub(crate) fn resolve(&mut self, parent: ScopeId, path: &str) -> ScopeId {
        self.resolve_counting(parent, path).0
    }

    /// As [`Self::resolve`], and whether the entry was refused for lack of room (and counted).
    pub(crate) fn resolve_counting(&mut self, parent: ScopeId, path: &str) -> (ScopeId, bool) {
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
    pub(crate) fn resolve_path(&mut self, path: &str) -> Option<ScopeId> {
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

    /// The path of every scope, indexed by id (`""` for the unscoped root).
    pub(crate) fn paths(&self) -> Vec<String> {
        let metas = self.scopes();
        let mut paths: Vec<String> = Vec::with_capacity(metas.len());
        for (id, meta) in metas.iter().enumerate() {
            let parent = usize::from(meta.parent);
            paths.push(if id == 0 {
                String::new()
            } else if parent == 0 {
                meta.name.to_string()
            } else {
                format!("{}/{}", paths[parent], meta.name)
            });
        }
        paths
    }

    /// The path of the scope `id` (`""` for the unscoped root).
    pub(crate) fn path(&self, id: ScopeId) -> String {
        let scopes = self.scopes();
        let mut segments = Vec::new();
        let mut cursor = id;
        while cursor != ROOT_SCOPE_ID {
            let meta = &scopes[usize::from(cursor)];
            segments.push(&*meta.name);
            cursor = meta.parent;
        }
        segments.reverse();
        segments.join("/")
    }
}

/// Scope entries refused because the table was full.
pub(crate) fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// Counts one more entry refused for lack of room, without the lock: for a call site whose cached
/// entry was refused before (the table never empties, so it is refused again).
pub(crate) fn count_refusal() {
    // Seeded bug (`.ci/mutants`): a refusal through a call site's cache goes uncounted.
    #[cfg(not(memledger_mutant = "cached_refusal_uncounted"))]
    REFUSED.fetch_add(1, Ordering::Relaxed);
}
