//! Sampled sites at the default rate against a workload whose sites are known: three functions on
//! four threads allocate known bytes in the ratio 1 : 2 : 4, and half of each thread's blocks are
//! freed on another thread. The estimates per site must fall within a bound derived from the
//! sampling distribution, the sites must carry their functions' names, and freeing the rest must
//! remove every sample.
//!
//! # The bound
//!
//! A block of `s` bytes is sampled with probability `p = 1 - exp(-s / R)` and then stands for
//! `s / p` bytes, so the estimate of `n` live blocks of `s` bytes has mean `n s` (unbiased) and
//! variance `n s^2 (1 - p) / p`. A buffer that grows by doubling to `s` bytes has brought in `s`
//! bytes in all, so the same `p` holds for it. Each site's estimate must be within 4.5 standard
//! deviations of the truth: under the normal approximation (over 100 samples per site) a miss has
//! probability below 10^-5, and with the fixed seed the samples, and so the test, are the same in
//! every run.
#![cfg(all(feature = "profile", feature = "jemalloc"))]

#[path = "../../memledger/tests/common/walk.rs"]
mod walk;

use std::hint::black_box;
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

const THREADS: usize = 4;
const SCOPE: &str = "profile_known";

/// 4 KiB blocks: 64 MiB live in all.
const SMALL: usize = 4096;
const SMALL_PER_THREAD: usize = 2 * 64 * 1024 * 1024 / SMALL / THREADS;
/// 1 KiB strings: 128 MiB live in all.
const STRING: usize = 1024;
const STRINGS_PER_THREAD: usize = 2 * 128 * 1024 * 1024 / STRING / THREADS;
/// Buffers grown by pushes to 32 KiB: 256 MiB live in all.
const BUFFER: usize = 32 * 1024;
const BUFFERS_PER_THREAD: usize = 2 * 256 * 1024 * 1024 / BUFFER / THREADS;

#[inline(never)]
fn allocate_blocks(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(black_box(vec![i as u8; SMALL]));
    }
    out
}

#[inline(never)]
fn allocate_strings(n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let text = "x".repeat(STRING);
    for _ in 0..n {
        out.push(black_box(text.as_str().to_owned()));
    }
    out
}

#[inline(never)]
fn grow_buffers(n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut buffer = Vec::new();
        for b in 0..BUFFER {
            buffer.push(b as u8);
        }
        out.push(black_box(buffer));
    }
    out
}

/// What one thread keeps: held only so that its blocks stay live.
#[allow(dead_code)]
struct Kept {
    blocks: Vec<Vec<u8>>,
    strings: Vec<String>,
    buffers: Vec<Vec<u8>>,
}

/// Splits `all` into the even ones (kept) and the odd ones (handed over to be freed).
fn halves<T>(all: Vec<T>) -> (Vec<T>, Vec<T>) {
    let mut kept = Vec::with_capacity(all.len() / 2);
    let mut given = Vec::with_capacity(all.len() / 2);
    for (i, x) in all.into_iter().enumerate() {
        if i % 2 == 0 {
            kept.push(x);
        } else {
            given.push(x);
        }
    }
    (kept, given)
}

type Handed = (Vec<Vec<u8>>, Vec<String>, Vec<Vec<u8>>);

/// The bound on the estimate of `n` live blocks of `size` bytes at `rate`.
fn bound(n: usize, size: usize, rate: u64) -> f64 {
    let p = 1.0 - (-(size as f64) / rate as f64).exp();
    4.5 * size as f64 * (n as f64 * (1.0 - p) / p).sqrt()
}

fn site_named<'a>(
    profile: &'a memledger_monitor::Profile,
    function: &str,
) -> Vec<&'a memledger_monitor::Site> {
    profile
        .scope(SCOPE)
        .map(|s| {
            s.sites
                .iter()
                .filter(|site| {
                    site.frames
                        .iter()
                        .any(|f| f.function.ends_with(&format!("::{function}")))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn estimates_per_site_fall_within_the_derived_bound() {
    memledger::sampling::set_seed(0x5eed);
    memledger::sampling::set_rate(memledger::sampling::DEFAULT_RATE).unwrap();
    let rate = memledger::sampling::rate();

    // Each thread frees what the previous one hands over.
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..THREADS).map(|_| mpsc::channel::<Handed>()).unzip();
    let mut receivers: Vec<Option<mpsc::Receiver<Handed>>> =
        receivers.into_iter().map(Some).collect();
    let mut threads = Vec::new();
    for i in 0..THREADS {
        let next = senders[(i + 1) % THREADS].clone();
        let mine = receivers[i].take().unwrap();
        let (ready, started) = mpsc::channel();
        threads.push(std::thread::spawn(move || {
            // The thread's first sample point is drawn here, before the next thread starts, so
            // that threads draw in the same order in every run.
            memledger::in_scope(SCOPE, || drop(black_box(vec![0u8; 64])));
            ready.send(()).unwrap();
            let (blocks, strings, buffers) = memledger::in_scope(SCOPE, || {
                (
                    allocate_blocks(SMALL_PER_THREAD),
                    allocate_strings(STRINGS_PER_THREAD),
                    grow_buffers(BUFFERS_PER_THREAD),
                )
            });
            let (blocks, given_blocks) = halves(blocks);
            let (strings, given_strings) = halves(strings);
            let (buffers, given_buffers) = halves(buffers);
            next.send((given_blocks, given_strings, given_buffers))
                .unwrap();
            // Freed in another scope, on another thread than they were allocated on.
            let _elsewhere = memledger::scope!("profile_known_freer");
            drop(mine.recv().unwrap());
            Kept {
                blocks,
                strings,
                buffers,
            }
        }));
        started.recv().unwrap();
    }
    drop(senders);
    let kept: Vec<Kept> = threads.into_iter().map(|t| t.join().unwrap()).collect();

    let profile = memledger_monitor::profile();
    let cases = [
        ("allocate_blocks", SMALL, SMALL_PER_THREAD),
        ("allocate_strings", STRING, STRINGS_PER_THREAD),
        ("grow_buffers", BUFFER, BUFFERS_PER_THREAD),
    ];
    let mut estimates = Vec::new();
    for (function, size, per_thread) in cases {
        let sites = site_named(&profile, function);
        assert!(!sites.is_empty(), "no site names {function}:\n{profile}");
        let n = per_thread / 2 * THREADS;
        let truth = (n * size) as f64;
        // Only the site's own blocks: the vectors that hold them are allocated there too, in
        // blocks of their own size, which the innermost frames tell apart.
        let estimate: u64 = sites.iter().map(|s| s.live.bytes).sum();
        let samples: u64 = sites.iter().map(|s| s.live.samples).sum();
        let holders = (per_thread * 24 * THREADS) as f64;
        let allowed = bound(n, size, rate) + bound(THREADS, per_thread * 24, rate) + holders;
        assert!(
            (estimate as f64 - truth).abs() <= allowed,
            "{function}: estimated {estimate} live bytes from {samples} samples, truth {truth}, \
             allowed error {allowed:.0}"
        );
        assert!(samples >= 100, "{function}: only {samples} samples");
        eprintln!(
            "{function}: estimated {estimate} live bytes from {samples} samples, truth {truth}, \
             bound {allowed:.0}"
        );
        estimates.push(estimate as f64);
    }
    // The ratio 1 : 2 : 4 shows through.
    assert!(
        estimates[0] < estimates[1] && estimates[1] < estimates[2],
        "{estimates:?}"
    );

    // Every sample of the freed halves is gone: what is live is only what the threads kept.
    let books = memledger::snapshot();
    let live = books.scope(SCOPE).unwrap().live_bytes;
    let scope_estimate = profile.scope(SCOPE).unwrap().live.bytes;
    assert!(
        (scope_estimate as f64 - live as f64).abs()
            <= bound(SMALL_PER_THREAD / 2 * THREADS, SMALL, rate)
                + bound(STRINGS_PER_THREAD / 2 * THREADS, STRING, rate)
                + bound(BUFFERS_PER_THREAD / 2 * THREADS, BUFFER, rate)
                + (THREADS * 3 * 64 * 1024) as f64,
        "scope estimate {scope_estimate} against {live} live in the books"
    );
    drop(kept);
    let after = memledger_monitor::profile();
    let left: u64 = after
        .scope(SCOPE)
        .map_or(0, |s| s.sites.iter().map(|site| site.live.samples).sum());
    assert_eq!(
        left, 0,
        "samples left after every block was freed:\n{after}"
    );
    assert_eq!(memledger::snapshot().scope(SCOPE).unwrap().live_bytes, 0);
    // What the sites allocated stays, and growth against the first profile shows the frees.
    let since = after.since(&profile);
    let grown: i64 = since
        .scope(SCOPE)
        .unwrap()
        .sites
        .iter()
        .map(|s| s.live_change)
        .sum();
    assert_eq!(grown, -(scope_estimate as i64));
    assert!(after.scope(SCOPE).unwrap().allocated.bytes > 0);
    walk::assert_expected_walk();
}
