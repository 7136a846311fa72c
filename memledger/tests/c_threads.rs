//! Threads made by C code, whose Rust heap operations happen only while they are torn down.
//! Its own binary: it counts counter slabs, which another test's threads would disturb.

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// Threads made by C code whose only Rust heap operation is a free in a pthread-key destructor,
/// after every thread-local destructor has run: the free is booked to the block's owner, and the
/// slab the thread took is given back, so the slab count does not grow with such threads.
#[cfg(target_os = "linux")]
#[test]
fn c_threads_freeing_during_teardown_give_their_slabs_back() {
    use std::ffi::c_void;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static KEY: AtomicUsize = AtomicUsize::new(0);
    const THREADS: u64 = 200;

    unsafe extern "C" fn free_block(block: *mut c_void) {
        // SAFETY: the value is a `Box<[u8; 100]>` leaked by the main thread, set once.
        drop(unsafe { Box::from_raw(block.cast::<[u8; 100]>()) });
    }
    extern "C" fn thread_main(block: *mut c_void) -> *mut c_void {
        // SAFETY: the key was created before any thread started.
        unsafe {
            libc::pthread_setspecific(KEY.load(Ordering::Relaxed) as libc::pthread_key_t, block)
        };
        std::ptr::null_mut()
    }

    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid place; `free_block` has the destructor signature.
    assert_eq!(
        unsafe { libc::pthread_key_create(&mut key, Some(free_block)) },
        0
    );
    KEY.store(key as usize, Ordering::Relaxed);
    let slabs_before = memledger::snapshot().thread_slabs();
    for _ in 0..THREADS {
        let block = memledger::in_scope("c_threads", || Box::into_raw(Box::new([7u8; 100])));
        let mut thread: libc::pthread_t = 0;
        // SAFETY: valid out-pointer, default attributes, an `extern "C"` start routine.
        let created = unsafe {
            libc::pthread_create(&mut thread, std::ptr::null(), thread_main, block.cast())
        };
        assert_eq!(created, 0);
        // SAFETY: a joinable thread created above.
        assert_eq!(
            unsafe { libc::pthread_join(thread, std::ptr::null_mut()) },
            0
        );
    }
    let snap = memledger::snapshot();
    let scope = snap.scope("c_threads").unwrap();
    assert_eq!(
        (scope.allocations, scope.deallocations, scope.live_bytes),
        (THREADS, THREADS, 0)
    );
    assert!(
        snap.thread_slabs() <= slabs_before + 1,
        "{} slabs before, {} after",
        slabs_before,
        snap.thread_slabs()
    );
}
