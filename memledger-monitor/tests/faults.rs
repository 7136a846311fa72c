//! Faults around the sampler: `fork()` while it runs, and readers that panic. (Failed and
//! nonsensical readings, stalled readers and full queues are in `tests/monitor.rs`; a full scope
//! table in `tests/overflow.rs`; thread-local teardown in the exactness suite; missing jemalloc
//! stats in `tests/system.rs`.)

use std::time::{Duration, Instant};

use memledger_monitor::{Event, ProcessMemory, Sampler};

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

/// What a child of `fork` must still be able to do: register a new scope, book to it exactly,
/// take snapshots, read its own memory, and run a sampler of its own. Returns the exit code.
fn child_work(round: usize) -> i32 {
    let path = format!("faults/child/{round}");
    let block = memledger::in_scope(&path, || vec![7u8; 12_345]);
    let snap = memledger::snapshot();
    if snap.scope(&path).map(|s| s.live_bytes) != Some(12_345) {
        return 2;
    }
    match ProcessMemory::read() {
        Ok(m) if m.rss_bytes > 0 => {}
        _ => return 3,
    }
    let Ok(sampler) = Sampler::builder()
        .interval(Duration::from_secs(3600))
        .start()
    else {
        return 4;
    };
    let sample = sampler.sample_now();
    if sample.snapshot.scope(&path).map(|s| s.live_bytes) != Some(12_345) {
        return 5;
    }
    sampler.stop();
    drop(block);
    0
}

/// Forks repeatedly while a sampler ticks every millisecond and another thread registers scopes
/// (both take the crate's locks all the time): every child keeps working, none hangs, and the
/// parent's books and sampler are unaffected.
#[test]
fn fork_with_a_running_sampler() {
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(1))
        .start()
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let registrar = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _g = memledger::enter(&format!("faults/registrar/{}", i % 64));
                drop(memledger::snapshot());
                i += 1;
            }
        })
    };
    for round in 0..20 {
        // SAFETY:
        // - the child only runs `child_work`, then leaves with `_exit`, which runs no destructor
        //   and no `atexit` handler of the parent's state.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = child_work(round);
            // SAFETY: ends the child without unwinding into the test harness.
            unsafe { libc::_exit(code) };
        }
        expect_clean_exit(pid, &format!("round {round}"));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    registrar.join().unwrap();
    let before = sampler.stats().ticks;
    let held = memledger::in_scope("faults/parent", || vec![1u8; 4321]);
    let sample = sampler.sample_now();
    assert_eq!(
        sample.snapshot.scope("faults/parent").unwrap().live_bytes,
        4321
    );
    assert!(sampler.stats().ticks > before);
    drop(held);
    sampler.stop();
}

/// Waits up to 20 s for the child `pid`, which must exit with status 0.
fn expect_clean_exit(pid: libc::pid_t, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break status;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("{what}: the child hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(libc::WIFEXITED(status), "{what}: child died: {status}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "{what}: child failed");
}

/// A recorder dropped in the child of a fork exits cleanly, and the parent's recorder goes on
/// writing. (The recorder forgets its thread handle in the child rather than join a thread that
/// is not there; glibc's `pthread_join` happens to return at once here either way, so this test
/// checks what surrounds that join, not the join itself.)
#[test]
fn fork_with_a_running_recorder() {
    let path = std::env::temp_dir().join(format!("memledger-fork-{}.jsonl", std::process::id()));
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(1))
        .start()
        .unwrap();
    let recorder = memledger_monitor::RecordingWriter::create(&sampler, &path).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY:
    // - the child only drops the recorder and the sampler, then leaves with `_exit`, which runs no
    //   destructor and no `atexit` handler of the parent's state.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        drop(recorder);
        drop(sampler);
        // SAFETY: ends the child without unwinding into the test harness.
        unsafe { libc::_exit(0) };
    }
    expect_clean_exit(pid, "the recorder's child");
    let sent = sampler.sample_now().sequence;
    let stats = recorder.stop().unwrap();
    sampler.stop();
    let recording = memledger_monitor::Recording::open(&path).unwrap();
    assert_eq!(recording.samples.len() as u64, stats.samples);
    assert!(recording.samples.iter().any(|s| s.sequence == sent));
    std::fs::remove_file(&path).unwrap();
}

/// A subscriber whose reader panics: the sampler goes on ticking, its other subscribers keep
/// receiving, and the dead reader's queue is let go.
#[test]
fn a_reader_that_panics() {
    let sampler = Sampler::builder()
        .interval(Duration::from_millis(2))
        .start()
        .unwrap();
    let doomed = sampler.subscribe();
    let healthy = sampler.subscribe();
    let reader = std::thread::spawn(move || {
        let _event = doomed.recv_timeout(Duration::from_secs(10));
        panic!("a reader that panics");
    });
    assert!(reader.join().is_err(), "the reader panicked");
    let held = memledger::in_scope("faults/after_panic", || vec![1u8; 999]);
    // A tick may see the scope registered before its block is booked: wait for the block.
    let seen = std::iter::from_fn(|| healthy.recv_timeout(Duration::from_secs(10)))
        .take(2000)
        .any(|event| match event {
            Event::Sample(s) => s
                .snapshot
                .scope("faults/after_panic")
                .is_some_and(|scope| scope.live_bytes == 999),
            _ => false,
        });
    assert!(seen, "the healthy reader saw no tick with the block");
    // And it keeps receiving: the reader that is gone took no one else's subscription with it.
    let later = std::iter::from_fn(|| healthy.recv_timeout(Duration::from_secs(10)))
        .filter(|event| matches!(event, Event::Sample(_)))
        .take(3)
        .count();
    assert_eq!(later, 3, "the healthy reader stopped receiving");
    let ticks = sampler.stats().ticks;
    std::thread::sleep(Duration::from_millis(50));
    assert!(sampler.stats().ticks > ticks, "the sampler stopped ticking");
    drop(held);
    sampler.stop();
}
