//! The seed every thread's sample points are drawn from: drawn from the operating system's
//! entropy the first time a point is drawn, unless the program set one
//! ([`set_seed`](super::set_seed)).
//!
//! A fleet's profiler adds up the profiles of many processes, which is right only if they sample
//! independently: processes that drew from one fixed seed would sample the very same
//! allocations, and their sum would be one process's estimate multiplied, its error with it.
//!
//! The first draw runs inside the allocator, on the cold path, so it must not allocate, lock or
//! panic: it asks `getrandom` (Linux) or `getentropy` (Apple's systems) for 8 bytes, mixed with
//! the time, the process id and the address of a stack variable, which stand in alone where
//! the system gives nothing.

use core::sync::atomic::{AtomicU64, Ordering};

/// The seed; 0 until one is drawn or set, so that the first draw can tell. No seed stored is 0
/// (see [`nonzero`]).
static SEED: AtomicU64 = AtomicU64::new(0);

/// What a seed of 0 is stored as: the seed 0 would mean "none yet".
const ZERO_SEED: u64 = 0x243f_6a88_85a3_08d3;

/// The seed, drawn now if it was neither drawn nor set yet.
#[inline]
pub(super) fn get() -> u64 {
    // Relaxed: the seed is a value on its own; nothing else is published with it.
    match SEED.load(Ordering::Relaxed) {
        0 => first_draw(),
        seed => seed,
    }
}

/// Sets the seed (`set_seed`).
pub(super) fn set(seed: u64) {
    SEED.store(nonzero(seed), Ordering::Relaxed);
}

/// The first draw: threads that race here each draw, and the first to store wins, so that every
/// thread uses one seed. A seed set meanwhile wins too.
#[cold]
fn first_draw() -> u64 {
    let drawn = nonzero(entropy());
    match SEED.compare_exchange(0, drawn, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => drawn,
        Err(current) => current,
    }
}

fn nonzero(seed: u64) -> u64 {
    if seed == 0 {
        ZERO_SEED
    } else {
        seed
    }
}

/// 64 bits that differ between processes: the system's random bytes where it has them, mixed
/// with what differs anyway (the time, the process id, where the stack is).
fn entropy() -> u64 {
    let local = 0u8;
    let stack = core::ptr::addr_of!(local) as usize as u64;
    system_random() ^ time_and_pid() ^ stack.rotate_left(17)
}

/// The time and the process id, mixed.
#[cfg(not(miri))]
fn time_and_pid() -> u64 {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()).rotate_left(32))
        .unwrap_or(0);
    let pid = u64::from(std::process::id());
    time.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ pid.rotate_left(48)
}

/// Under Miri, whose isolation refuses the wall clock and the process id, the system's random
/// bytes and the stack's address alone.
#[cfg(miri)]
fn time_and_pid() -> u64 {
    0
}

/// 8 bytes from the kernel's random pool (`getrandom`, which does not block once the pool was
/// seeded at boot and fails rather than block before); 0 if it gives none.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn system_random() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY:
    // - `bytes` is valid for writes of its 8 bytes for the whole call;
    // - `getrandom` neither allocates nor keeps the pointer.
    let got =
        unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), libc::GRND_NONBLOCK) };
    if got == bytes.len() as isize {
        u64::from_ne_bytes(bytes)
    } else {
        0
    }
}

/// 8 bytes from the system's random source (`getentropy`, which never blocks for so few).
#[cfg(target_vendor = "apple")]
fn system_random() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY:
    // - `bytes` is valid for writes of its 8 bytes, at most the 256 `getentropy` takes;
    // - `getentropy` neither allocates nor keeps the pointer.
    let got = unsafe { libc::getentropy(bytes.as_mut_ptr().cast(), bytes.len()) };
    if got == 0 {
        u64::from_ne_bytes(bytes)
    } else {
        0
    }
}

/// Elsewhere the time, the process id and the stack's address are all there is.
#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn system_random() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    // Only where the system gives random bytes: elsewhere a coarse clock could give the same
    // figure twice.
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    #[test]
    fn entropy_differs_between_draws() {
        // Two draws agree only if the system gave the same 8 random bytes twice and the clock
        // stood still: a chance of 2^-64.
        assert_ne!(super::entropy(), super::entropy());
    }

    #[test]
    fn no_seed_is_stored_as_zero() {
        assert_ne!(super::nonzero(0), 0);
        assert_eq!(super::nonzero(7), 7);
    }
}
