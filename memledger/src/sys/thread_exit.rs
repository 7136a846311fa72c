//! Running a function when a thread exits, after its thread-local destructors: how the
//! composition point (`crate::thread`) gives a thread's slab back. The function is passed in, so
//! that this layer calls nothing above it.
//!
//! On Unix this is a pthread key whose destructor runs after every thread-local destructor
//! (glibc runs `thread_local!` destructors first, then key destructors), also for threads made by
//! C code and for threads whose first allocation happens while they are being torn down (a key
//! set during one of the destructor rounds gets its destructor in the next; only a first
//! allocation in the very last round would keep its slab). It uses no thread-local with a
//! destructor, so registering it never re-enters std's destructor list from inside the allocator.
//!
//! Elsewhere, Apple's platforms included (there a thread-local touched from a key destructor may
//! already have been reset, so the slab would not be found), it is a `thread_local!` with a
//! destructor.

/// Arranges for `release` to run when the calling thread exits. Returns `false` when that cannot
/// be arranged; the caller then releases at once.
#[cfg(all(unix, not(target_vendor = "apple")))]
pub(crate) fn arrange_release(release: fn()) -> bool {
    use core::ffi::c_void;

    use crate::sys::atomic::{AtomicUsize, Ordering};

    /// No key made yet. Keys are small integers, never this.
    const UNSET: usize = usize::MAX;
    static KEY: AtomicUsize = AtomicUsize::new(UNSET);

    /// The key's destructor: its value is the function to run.
    unsafe extern "C" fn on_thread_exit(value: *mut c_void) {
        // SAFETY:
        // - the key's value is only ever set below, to a `fn()` cast to a pointer; on the
        //   platforms of this arm a function pointer and a data pointer have the same size and
        //   representation (POSIX requires it of `dlsym`), so the cast back gives that function.
        let release = unsafe { core::mem::transmute::<*mut c_void, fn()>(value) };
        release();
    }

    // Acquire: pairs with the AcqRel exchange that published the key.
    let mut key = KEY.load(Ordering::Acquire);
    if key == UNSET {
        let mut new: libc::pthread_key_t = 0;
        // SAFETY:
        // - `new` is a valid place for the key; `on_thread_exit` has the destructor signature
        //   pthread expects and may run on any thread.
        if unsafe { libc::pthread_key_create(&mut new, Some(on_thread_exit)) } != 0 {
            return false;
        }
        key = match KEY.compare_exchange(UNSET, new as usize, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => new as usize,
            Err(winner) => {
                // Another thread made the key first: use it, and drop ours.
                // SAFETY:
                // - `new` was created above and never handed out.
                unsafe { libc::pthread_key_delete(new) };
                winner
            }
        };
    }
    // The value is the function to run: non-null, so the destructor runs, and handed back to it.
    let value = release as *mut c_void;
    // SAFETY:
    // - `key` was returned by `pthread_key_create` and is never deleted once published.
    unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, value) == 0 }
}

/// Arranges for `release` to run when the calling thread exits. Returns `false` when that cannot
/// be arranged; the caller then releases at once.
#[cfg(not(all(unix, not(target_vendor = "apple"))))]
pub(crate) fn arrange_release(release: fn()) -> bool {
    use core::cell::Cell;

    /// Runs the function it holds when the thread's thread-locals are destroyed.
    struct OnExit(Cell<Option<fn()>>);

    impl Drop for OnExit {
        fn drop(&mut self) {
            if let Some(release) = self.0.take() {
                release();
            }
        }
    }

    std::thread_local! {
        static ON_EXIT: OnExit = const { OnExit(Cell::new(None)) };
    }

    ON_EXIT
        .try_with(|on_exit| on_exit.0.set(Some(release)))
        .is_ok()
}
