//! Keeping the crate's locks usable in the child of a `fork()`.
//!
//! Only the forking thread lives on in the child. A lock that another thread (the sampler, say,
//! in the middle of a tick) held at that moment would stay locked there forever, and the child's
//! next scope registration, snapshot or memory reading would hang. So every path that takes one
//! of the crate's process-wide locks (the scope registry, the budget overrides, the cached
//! `/proc` and cgroup files, the physical-memory cache) first enters a *gate* shared for reading,
//! and a `pthread_atfork` handler takes the gate exclusively before the fork: no such lock is
//! held while the process is copied, and both the parent and the child open the gate again right
//! after it.
//!
//! The allocation path takes no lock at all, so it needs none of this.

use core::cell::Cell;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

std::thread_local! {
    /// Gates this thread holds, nested: only the outermost one takes the lock, so that a path
    /// that enters the gate twice never waits for a fork that waits for it.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The exclusive gate, held by the forking thread from `prepare` to `parent` / `child`.
    static FORKING: Cell<Option<RwLockWriteGuard<'static, ()>>> = const { Cell::new(None) };
}

/// Held while a process-wide lock of the crate may be held.
pub struct Gate {
    _read: Option<RwLockReadGuard<'static, ()>>,
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Enters the gate; take it before any of the crate's process-wide locks.
pub fn gate() -> Gate {
    arrange();
    let outermost = DEPTH
        .try_with(|d| {
            d.set(d.get() + 1);
            d.get() == 1
        })
        // During thread-local teardown: take the lock (nesting cannot be tracked any more).
        .unwrap_or(true);
    Gate {
        _read: outermost.then(|| GATE.read().unwrap_or_else(|e| e.into_inner())),
    }
}

/// Joins `thread`, which process `pid` started. In the child of a fork the thread was never
/// copied: its handle names a thread of the parent, which must be neither joined nor detached
/// there, so it is forgotten and `None` returned.
pub fn join_unless_forked<T>(
    thread: std::thread::JoinHandle<T>,
    pid: u32,
) -> Option<std::thread::Result<T>> {
    if std::process::id() == pid {
        Some(thread.join())
    } else {
        std::mem::forget(thread);
        None
    }
}

/// Registers the fork handlers, once per process.
fn arrange() {
    #[cfg(all(unix, not(miri)))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY:
            // - the three handlers are `extern "C"` functions without arguments, valid for the
            //   life of the process; registering them has no other precondition. If it fails
            //   (out of memory), forks are no safer than without this crate, and nothing else
            //   changes.
            #[cfg(not(memledger_mutant = "fork_without_gate"))]
            unsafe {
                libc::pthread_atfork(Some(prepare), Some(reopen), Some(reopen))
            };
            // Seeded bug (`.ci/mutants`): no fork handlers, so a child can inherit a held lock.
            #[cfg(memledger_mutant = "fork_without_gate")]
            let _ = (prepare, reopen);
        });
    }
}

/// Before a fork, on the forking thread: waits until no other thread holds any of the crate's
/// locks, and keeps them from being taken until the fork is done.
#[cfg(all(unix, not(miri)))]
extern "C" fn prepare() {
    // A thread that forks while inside the gate itself cannot wait for it: it would wait for
    // itself. Such a fork (from inside a memory source, say) goes ahead as without this crate.
    if DEPTH.try_with(|d| d.get()).unwrap_or(0) != 0 {
        return;
    }
    let held = GATE.write().unwrap_or_else(|e| e.into_inner());
    let _ = FORKING.try_with(|f| f.set(Some(held)));
}

/// After a fork, in the parent and in the child: opens the gate again.
#[cfg(all(unix, not(miri)))]
extern "C" fn reopen() {
    let _ = FORKING.try_with(|f| drop(f.take()));
}
