//! 100,000 short-lived threads: the books stay exact and the ledger's own memory stays flat,
//! because a thread's counter slab is given back at thread exit and reused by the next thread.

#[global_allocator]
static GLOBAL: memledger::Ledger<std::alloc::System> = memledger::Ledger::new(std::alloc::System);

/// The tests of this file count slabs, which any other thread starting meanwhile would disturb:
/// they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const TOTAL: usize = 100_000;
const BATCH: usize = 16;

fn run_batch() {
    let handles: Vec<_> = (0..BATCH)
        .map(|i| {
            std::thread::spawn(move || {
                let _g = memledger::scope!("thread_churn");
                let v = vec![i as u8; 100 + i];
                std::hint::black_box(&v);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Holds `BATCH + 2` threads alive at once, more than the batches below ever overlap (a batch,
/// this thread and the harness's), so that the slab count reaches its high-water mark first.
fn overlap_all() {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(BATCH + 2));
    let handles: Vec<_> = (0..BATCH + 2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let v = vec![0u8; 10];
                barrier.wait();
                drop(v);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn hundred_thousand_threads_hold_bounded_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    overlap_all();
    let mut own_at_10k = None;
    for batch in 0..TOTAL / BATCH {
        run_batch();
        if (batch + 1) * BATCH == 10_000 {
            let snap = memledger::snapshot();
            own_at_10k = Some((snap.own().live_bytes, snap.thread_slabs()));
        }
    }
    let snap = memledger::snapshot();
    let churn = snap.scope("thread_churn").unwrap();
    let batches = (TOTAL / BATCH) as u64;
    let bytes_per_batch: u64 = (0..BATCH as u64).map(|i| 100 + i).sum();
    assert_eq!(churn.allocations, batches * BATCH as u64);
    assert_eq!(churn.deallocations, churn.allocations);
    assert_eq!(churn.allocated_bytes, batches * bytes_per_batch);
    assert_eq!(churn.live_bytes, 0);
    let (own_then, slabs_then) = own_at_10k.unwrap();
    // At most one slab per thread alive at once.
    assert!(
        snap.thread_slabs() <= BATCH + 4 + 2,
        "{} slabs",
        snap.thread_slabs()
    );
    assert_eq!(snap.thread_slabs(), slabs_then);
    assert_eq!(snap.own().live_bytes, own_then);
}

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

    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
