//! What the allocation benches share: the call boundary, the churn's size sequence, and a
//! baseline that carries the ledger's tag but books nothing.

#![allow(dead_code)] // each bench binary uses its own subset

use std::alloc::{handle_alloc_error, GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use criterion::Criterion;

use memledger::{Ledger, TrailerOnly};
use tikv_jemallocator::Jemalloc;

/// The allocators under test, called directly (each bench binary's global allocator is bare
/// jemalloc, so that the harness's own allocations stay out of the variants).
pub static JEMALLOC: Jemalloc = Jemalloc;
pub static SYSTEM: System = System;
pub static LEDGER_SYSTEM: Ledger<System> = Ledger::new(System);
/// The ledger with the trailer on every block: the comparison for the default.
pub static LEDGER_JEMALLOC: Ledger<TrailerOnly<Jemalloc>> = Ledger::new(TrailerOnly(Jemalloc));
pub static TAG_ONLY_JEMALLOC: TagOnly<Jemalloc> = TagOnly(Jemalloc);
/// The default ledger over jemalloc: full blocks (no room for the trailer in their class) in
/// per-scope arenas (the trailer on every block where the `arenas` feature is off).
pub static LEDGER_ARENAS: Ledger<Jemalloc> = Ledger::new(Jemalloc);

/// The benches' criterion settings: short, because the machines they run on are noisy and the
/// figures that matter are ratios between variants measured minutes apart in one run.
/// `samples` of two seconds each per case.
pub fn config(samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(samples)
}

/// Live blocks in a churn ring. A power of two, so that the slot is a mask of the step.
pub const RING: usize = 256;
/// Length of the size sequence, a power of two; longer than the ring, so a slot sees many sizes.
pub const SEQUENCE: usize = 4096;
/// Alignment of every churn block: what most Rust allocations (`Box<u64>`, `Vec<usize>`) ask for.
pub const ALIGN: usize = 8;

/// Allocates through `allocator` behind a call boundary.
///
/// A `#[global_allocator]` is reached through `__rust_alloc`, a call that is never inlined into
/// the program; without the boundary the benchmark loop could hoist parts of an allocator
/// (thread-local addresses, constant checks) out of the loop, which no real caller gets.
#[inline(never)]
pub fn alloc_via<A: GlobalAlloc>(allocator: &A, layout: Layout) -> *mut u8 {
    // SAFETY:
    // - every layout used here has a non-zero size.
    let ptr = unsafe { allocator.alloc(layout) };
    if ptr.is_null() {
        handle_alloc_error(layout);
    }
    ptr
}

/// Frees through `allocator` behind a call boundary (see [`alloc_via`]).
///
/// # Safety
///
/// - `ptr` was returned by `allocator` for `layout` and has not been freed.
#[inline(never)]
pub unsafe fn dealloc_via<A: GlobalAlloc>(allocator: &A, ptr: *mut u8, layout: Layout) {
    // SAFETY:
    // - guaranteed by the caller.
    unsafe { allocator.dealloc(ptr, layout) }
}

/// xorshift64: deterministic, so every variant sees the same sizes in the same order.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The churn's size sequence: small sizes in 8..=512, the range where most of a program's blocks
/// fall and where the allocator's fast path is taken.
pub fn churn_layouts() -> Vec<Layout> {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    (0..SEQUENCE)
        .map(|_| {
            let size = 8 + (xorshift(&mut state) % 505) as usize;
            Layout::from_size_align(size, ALIGN).expect("small sizes make valid layouts")
        })
        .collect()
}

/// The ledger's tag without its books: asks `A` for 2 more bytes, writes a 2-byte trailer and
/// reads it back at free. Splits the ledger's cost into what the tag costs (this against bare
/// `A`) and what the counters cost (the ledger against this).
pub struct TagOnly<A>(pub A);

// SAFETY:
// - blocks come from `A` for the caller's alignment and `size + 2` bytes, and are given back
//   to `A` with that same layout.
unsafe impl<A: GlobalAlloc> GlobalAlloc for TagOnly<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY:
        // - the benches' layouts are small, so `size + 2` is a valid size at this alignment.
        let outer = unsafe { Layout::from_size_align_unchecked(layout.size() + 2, layout.align()) };
        // SAFETY:
        // - `outer` has a non-zero size.
        let ptr = unsafe { self.0.alloc(outer) };
        if !ptr.is_null() {
            // SAFETY:
            // - the block holds `size + 2` bytes; the trailer has no alignment of its own.
            unsafe { ptr.add(layout.size()).cast::<u16>().write_unaligned(3) };
        }
        ptr
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY:
        // - `ptr` came from `alloc` above with this layout: it holds a trailer at `size`.
        black_box(unsafe { ptr.add(layout.size()).cast::<u16>().read_unaligned() });
        // SAFETY:
        // - the block was allocated from `A` with exactly this outer layout.
        unsafe {
            let outer = Layout::from_size_align_unchecked(layout.size() + 2, layout.align());
            self.0.dealloc(ptr, outer)
        }
    }
}

/// A churn: a ring of [`RING`] live blocks; each step frees the oldest and allocates the next size
/// of the sequence in its place. The ring starts full, so that every step is exactly one free and
/// one allocation; the blocks left are freed on drop.
pub struct Churn<'a, A: GlobalAlloc> {
    allocator: &'a A,
    layouts: &'a [Layout],
    ring: Vec<(*mut u8, Layout)>,
    step: usize,
}

impl<'a, A: GlobalAlloc> Churn<'a, A> {
    /// A full ring, starting `offset` places into the size sequence.
    pub fn new(allocator: &'a A, layouts: &'a [Layout], offset: usize) -> Self {
        let allocator = black_box(allocator);
        let ring = (0..RING)
            .map(|i| {
                let layout = layouts[(offset + i) % SEQUENCE];
                (alloc_via(allocator, layout), layout)
            })
            .collect();
        Churn {
            allocator,
            layouts,
            ring,
            step: offset + RING,
        }
    }

    /// Frees the oldest block and allocates the next one.
    #[inline(always)]
    pub fn step(&mut self) {
        let slot = &mut self.ring[self.step % RING];
        // SAFETY:
        // - every ring slot holds a live block of `allocator` with the layout stored beside it.
        unsafe { dealloc_via(self.allocator, black_box(slot.0), slot.1) };
        let layout = black_box(self.layouts[self.step % SEQUENCE]);
        *slot = (black_box(alloc_via(self.allocator, layout)), layout);
        self.step = self.step.wrapping_add(1);
    }
}

impl<A: GlobalAlloc> Drop for Churn<'_, A> {
    fn drop(&mut self) {
        for &(ptr, layout) in &self.ring {
            // SAFETY:
            // - each slot holds a live block of `allocator` with its layout; freed once, here.
            unsafe { dealloc_via(self.allocator, ptr, layout) };
        }
    }
}
