//! Giving a thread's counter slab back when the thread exits.
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

/// Arranges for [`crate::books::per_thread::release_thread_slab`] to run when the calling thread
/// exits. Returns `false` when that cannot be arranged; the caller then gives the slab back at
/// once.
#[cfg(all(unix, not(target_vendor = "apple")))]
pub(crate) fn arrange_release() -> bool {
    use core::ffi::c_void;

    use crate::sys::atomic::{AtomicUsize, Ordering};

    /// No key made yet. Keys are small integers, never this.
    const UNSET: usize = usize::MAX;
    static KEY: AtomicUsize = AtomicUsize::new(UNSET);

    unsafe extern "C" fn on_thread_exit(_slab: *mut c_void) {
        crate::books::per_thread::release_thread_slab();
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
    // Any non-null value makes the destructor run; the slab itself is found through the
    // thread-local state, which `release_thread_slab` also marks as released.
    let value = core::ptr::NonNull::<c_void>::dangling().as_ptr();
    // SAFETY:
    // - `key` was returned by `pthread_key_create` and is never deleted once published.
    unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, value) == 0 }
}

/// Arranges for [`crate::books::per_thread::release_thread_slab`] to run when the calling thread
/// exits. Returns `false` when that cannot be arranged; the caller then gives the slab back at
/// once.
#[cfg(not(all(unix, not(target_vendor = "apple"))))]
pub(crate) fn arrange_release() -> bool {
    struct SlabOwner;

    impl Drop for SlabOwner {
        fn drop(&mut self) {
            crate::books::per_thread::release_thread_slab();
        }
    }

    std::thread_local! {
        static OWNER: SlabOwner = const { SlabOwner };
    }

    OWNER.try_with(|_| ()).is_ok()
}
