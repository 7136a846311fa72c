//! Scopes for futures: a wrapper that enters its scope on every poll, wherever the task runs.

use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::scope::ScopeHandle;

/// Books a future's allocations to a scope, on whichever thread each poll runs.
///
/// A [`ScopeGuard`](crate::ScopeGuard) is per thread and must not be held across an `.await`: a
/// task that moves between a runtime's threads, or shares a thread with other tasks, would book
/// them to the wrong scope. [`in_scope`](ScopeExt::in_scope) wraps the future instead, so that
/// each poll, and the future's drop, run with the scope entered.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);
/// use memledger::ScopeExt;
///
/// async fn build_project_index() -> Vec<String> {
///     (0..100).map(|i| format!("symbol_{i}")).collect()
/// }
///
/// # fn main() {
/// let rt = tokio::runtime::Builder::new_multi_thread().build().unwrap();
/// let index = rt.block_on(async {
///     tokio::spawn(build_project_index().in_scope("project_indexes")).await.unwrap()
/// });
/// assert!(memledger::snapshot().scope("project_indexes").unwrap().live_bytes > 0);
/// # drop(index);
/// # }
/// ```
pub trait ScopeExt: Sized {
    /// Wraps `self` so that it runs in the scope `name`, a child of the scope current here, now
    /// (where the future is made, not where it is polled).
    fn in_scope(self, name: &str) -> InScope<Self> {
        self.with_scope(ScopeHandle::current().child(name))
    }

    /// Wraps `self` so that it runs in `scope`.
    fn with_scope(self, scope: ScopeHandle) -> InScope<Self> {
        InScope {
            inner: ManuallyDrop::new(self),
            scope,
        }
    }
}

impl<F: Future> ScopeExt for F {}

/// A future that runs in a scope: see [`ScopeExt`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct InScope<F> {
    inner: ManuallyDrop<F>,
    scope: ScopeHandle,
}

impl<F> InScope<F> {
    /// The scope the future runs in.
    pub fn scope(&self) -> ScopeHandle {
        self.scope
    }
}

impl<F: Future> Future for InScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY:
        // - `inner` is structurally pinned: it is never moved out of `self` (only dropped in
        //   place, in `Drop`), `InScope` is `Unpin` only if `F` is, and `scope` is `Copy` and not
        //   pinned.
        let (inner, scope) = unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut *this.inner), this.scope)
        };
        let _guard = scope.enter();
        inner.poll(cx)
    }
}

impl<F> Drop for InScope<F> {
    fn drop(&mut self) {
        let _guard = self.scope.enter();
        // SAFETY:
        // - `inner` is dropped once, here, and never used again; dropping in place keeps the pin
        //   guarantee.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}
